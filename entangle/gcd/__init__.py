"""The GCD recipe: data (splits, planted and embedded sets), models, losses and the train loop."""
