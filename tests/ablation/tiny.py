"""A grid cell small enough for CI: synthetic data, no pretraining, one short epoch (a cell
trains in about a second); the base settings of the ablation tests' grids."""

TINY = {
    "data": "synthetic",
    "epochs": 1,
    "batch_size": 128,
    "pretrain_epochs": 0,
    "reference_epochs": 1,
    "probe_every": 2,
    "probeset_every": 100,
    "probeset_size": 100,
    "soc_k": 4,
    "device": "cpu",
    "save_features": False,
}
