"""entangle.data.class_splits: the published class lists, checked against SimGCD's pickles."""

from __future__ import annotations

from entangle.data import class_splits as cs

# CVMI-Lab/SimGCD data/ssb_splits/*.pkl, read with pickle.load: list lengths, the first ids
# and the sums of the lists (a typo anywhere in class_splits.py changes a sum)
SSB = {
    "CUB": {"known": (100, (150, 70, 34, 178, 199), 10154), "hard": 34, "medium": 34, "easy": 32},
    "AIRCRAFT": {"known": (50, (0, 1, 2, 3, 4), 2066), "hard": 13, "medium": 17, "easy": 20},
    "SCARS": {"known": (98, (1, 11, 25, 38, 46), 12244), "hard": 7, "medium": 15, "easy": 76},
}


# herbarium_19_class_splits.pkl: 341 'Old' (first 113, 378, 303, 504, 301; sum 116254), 342 'New'
HERB_OLD = (341, (113, 378, 303, 504, 301), 116254)


# SimGCD data/imagenet.py: np.random.seed(0); np.sort(np.random.choice(range(1000), 100, False))
IMAGENET100_FIRST = (1, 14, 27, 31, 45, 55, 77, 103, 108, 141)


def test_class_lists_are_the_ssb_pickles():
    for prefix, want in SSB.items():
        known = getattr(cs, f"{prefix}_KNOWN")
        assert (len(known), known[:5], sum(known)) == want["known"]
        for part in ("hard", "medium", "easy"):
            assert len(getattr(cs, f"{prefix}_UNKNOWN_{part.upper()}")) == want[part]
    old = cs.HERBARIUM19_OLD
    assert (len(old), old[:5], sum(old)) == HERB_OLD and len(cs.HERBARIUM19_NEW) == 342
    assert set(old).isdisjoint(cs.HERBARIUM19_NEW) and set(old) | set(cs.HERBARIUM19_NEW) == set(
        range(683)
    )
    assert cs.IMAGENET100_CLASSES[:10] == IMAGENET100_FIRST
