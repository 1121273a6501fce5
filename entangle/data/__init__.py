"""GCD data: datasets with their labeled/unlabeled/old/new split, image sources, synthetic
data, augmentations.
"""
