"""The keys of a run's records, defined once (their meanings: docs/records.md).

Writers (the probe, the recipe's evaluation and DONE summary) and readers (runs/records.py,
runs/summary.py, the report, the ablation table, TensorBoard export) spell a key through these
names, so a renamed key is one edit here and a misspelt one is a NameError, not a silent NaN.
Torch-free and import-free: anything may import it.
"""

from __future__ import annotations

# ---------------------------------------------------------------- step and epoch records
# (steps.jsonl / epochs.jsonl): the x axes and bookkeeping of every record
STEP = "step"
EPOCH = "epoch"
TIME = "time"
NAN = "nan"  # {metric key: why it is NaN}
SOC_K_USED = "k"  # the SOC subspace dimension an evaluation used (a setting, not a measure)

# the gradient records R of a step, by the gradient they describe
RAW = "raw"  # the objective's own g_S, g_U
EAGC = "eagc"  # after EAGC's correction
EAGC_AUTHORS = "eagc_authors"  # the same, weighted as the EAGC authors' compute_gdc does
COORDINATED = "coordinated"  # a gradient-level coordinator's applied update
APPLIED_KINDS = (EAGC, COORDINATED)  # the update the optimiser applied, where not the raw one
GRADIENT_KINDS = (RAW, EAGC, EAGC_AUTHORS, COORDINATED)  # every gradient record R of a step
# a gradient record's metrics, and the parameter group the paper reports
COS = "cos"
GDC = "gdc"
CONFLICT = "conflict"  # cos < 0, per step (a rate over steps or batches)
LAST_BLOCK = "last_block"
# the ProbeSet's evaluation of a step (its SOC: PROBESET / SOC)
PROBESET = "probeset"
SOC = "soc"
# the core's other step-record keys and each measurement's (probing/measurements.py)
LOSSES = "losses"  # {"sup", "unsup"}
N_LABELED = "n_labeled"
RANK_LOCAL = "rank_local"  # under DDP: which entries are of this rank's rows alone
FEATURE, FEATURE_EAGC = "feature", "feature_eagc"  # per-row feature conflict, raw / corrected
ATTRIBUTION, ATTRIBUTION_EAGC = "attribution", "attribution_eagc"
# inside ATTRIBUTION: the rows a subsampled attribution covered ({"rows", "of", ...})
ATTRIBUTION_SUBSAMPLE = "subsample"
ENERGY = "energy"  # {"ratio": {group: summary}, "eep_weight": summary, ...}
ENERGY_RATIO, EEP_WEIGHT = "ratio", "eep_weight"  # inside ENERGY
EAGC_MU = "eagc_mu"
EAGC_AUTHORS_WEIGHTS = "eagc_authors_weights"

# an evaluation record's clustering accuracy on the unlabeled rows (epochs.jsonl)
ACC_ALL = "acc_all"
ACC_OLD = "acc_old"
ACC_NEW = "acc_new"
ACC_PROTOCOL = "acc_protocol"
ACC_KEYS = {"all": ACC_ALL, "old": ACC_OLD, "new": ACC_NEW}
# an evaluation record's attached checkpoint analysis (logs/attach.py, import-log --attach):
# CHECKPOINT / CHECKPOINT_GRADIENTS = {kind: {group: {gdc, cos, conflict}}, "batches": n}
CHECKPOINT = "checkpoint"
CHECKPOINT_GRADIENTS = "gradients"
GRADIENT_BATCHES = "batches"

# ---------------------------------------------------------------- the DONE summary
# (gcd.evaluate.run_summary writes it; the ablation table reads it)
EARLY_STEPS_KEY = "early_steps"  # the window of the `_early` keys
SOC_EARLY = "soc_early"  # ProbeSet SOC, mean over the first early_steps
SOC_ALL = "soc_all"  # ProbeSet SOC, mean over the run
SOC_LAST_EPOCH = "soc"  # the last evaluation's SOC over all samples
CONFLICT_RATE = "conflict_rate"
STEPS_PROBED = "steps_probed"
NAN_STEPS = "nan_steps"
EARLY, MEAN = "early", "mean"  # the windows of done_gdc: first early_steps; every probed step


def done_gdc(window: str, kind: str = RAW) -> str:
    """The DONE key of the last block's GDC: ``gdc_early``, ``gdc_mean_eagc``, ...

    Args:
        window: :data:`EARLY` or :data:`MEAN`.
        kind: :data:`RAW` (no suffix) or one of :data:`APPLIED_KINDS`.
    """
    return f"{GDC}_{window}" + ("" if kind == RAW else f"_{kind}")


def done_cos_mean(kind: str = RAW) -> str:
    """The DONE key of the mean raw (or applied) cos(g_S, g_U): ``cos_mean``, ``cos_mean_eagc``."""
    return f"{COS}_mean" + ("" if kind == RAW else f"_{kind}")


def applied_kind(summary) -> str:
    """Which applied update a DONE summary describes: a coordinator's where it has one, else
    EAGC's (whose keys are absent for a baseline: readers fall back to the raw ones)."""
    return COORDINATED if done_gdc(EARLY, COORDINATED) in summary else EAGC
