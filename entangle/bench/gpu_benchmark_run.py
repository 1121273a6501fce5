"""Part 4 of the GPU check (entangle.bench.gpu_check, docs/reliability.md): a benchmark-shaped
training run.

``entangle train``'s loop on a fake CUB-200-2011 tree it writes itself (random JPEGs in the
published layout), ViT-B/16 from random init, EAGC with the probe on every step, under fp16
(GradScaler) and again under bf16: steady-state step time, their ratio, samples/s and peak GPU
memory. Kept apart from the check's driver so the driver reads as its four parts.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from entangle.gcd.train import TrainConfig, prepare, train
from entangle.runs.directory import RunReader
from entangle.runs.io import atomic_text, atomic_write, make_dir, make_temp_dir, remove_tree

# the benchmark-shaped run (part 4): 200 CUB classes x 4 training images = 800 samples, 20
# steps of 40 (SimGCD's weighted sampler draws n per epoch, last batch dropped); the reference
# model trains one epoch on the 400 labeled samples
RUN_STEPS, RUN_TRAIN_PER_CLASS, RUN_PX = 20, 4, 224
# the lighter form, where the check's time budget has no room for the full one: 2 training
# images per class, so 10 steps of the same batch of 40
RUN_LIGHT_TRAIN_PER_CLASS = 2


def write_fake_cub(root, *, train_per_class: int, test_per_class: int, px: int, seed: int = 0):
    """A CUB_200_2011 tree under ``root`` in the published layout, random-noise JPEGs.

    ``images.txt``, ``image_class_labels.txt``, ``train_test_split.txt`` and
    ``images/<class folder>/<file>.jpg`` (``px`` x ``px``), the files CVMI-Lab/SimGCD's
    data/cub.py reads; every write goes through entangle.runs.io. Returns ``root``.
    """
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = make_dir(Path(root) / "CUB_200_2011")
    images, labels, split = [], [], []
    img_id = 0
    for c in range(1, 201):
        folder = make_dir(base / "images" / f"{c:03d}.Fake_Bird_{c}")
        for j in range(train_per_class + test_per_class):
            img_id += 1
            name = f"Fake_Bird_{c}_{j:04d}.jpg"
            buf = io.BytesIO()
            pixels = rng.integers(0, 256, (px, px, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(buf, format="JPEG", quality=85)
            atomic_write(folder / name, lambda fh, data=buf.getvalue(): fh.write(data))
            images.append(f"{img_id} {folder.name}/{name}")
            labels.append(f"{img_id} {c}")
            split.append(f"{img_id} {1 if j < train_per_class else 0}")
    for fname, rows in (
        ("images", images),
        ("image_class_labels", labels),
        ("train_test_split", split),
    ):
        atomic_text(base / f"{fname}.txt", "\n".join(rows) + "\n")
    return Path(root)


def benchmark_run(device, *, quick: bool = False, light: bool = False, say=print) -> dict:
    """Part 4: the training loop on a fake CUB tree under fp16 and bf16, timed and printed.

    Each amp mode trains one epoch of ``RUN_STEPS`` steps (EAGC, probe on every step,
    attribution every 10th probed step, the ProbeSet every 10 steps) through
    :func:`entangle.gcd.train.train`, after its reference model. Step time is steady-state:
    from the end of step 1 to the end of the last step, synchronised at those two points,
    divided by the steps between (the first step's warm-up left out). ``quick``: a tiny form
    for the CPU tests (ViT tiny at 32 px, 1 training image per class, 2 steps, amp off).
    ``light``: half the training images, so half the steps of the same batch (the GPU check's
    lighter settings).

    Returns:
        ``{"steps", "batch_size", "modes": {amp: {"nonfinite_loss_run", "step_s",
        "samples_per_s", "images_per_s", "peak_gpu_memory_mib"}}, "bf16_vs_fp16"}``.
    """
    import tempfile

    dev = torch.device(device)
    per_class = 1 if quick else RUN_LIGHT_TRAIN_PER_CLASS if light else RUN_TRAIN_PER_CLASS
    steps = 2 if quick else RUN_STEPS * per_class // RUN_TRAIN_PER_CLASS
    batch = 200 * per_class // steps
    tmp = make_temp_dir(tempfile.gettempdir(), "entangle-gpu-check-")
    try:
        t = time.perf_counter()
        root = write_fake_cub(
            tmp / "cub", train_per_class=per_class, test_per_class=1, px=32 if quick else RUN_PX
        )
        say(f"fake CUB tree: {200 * (per_class + 1)} JPEGs ({time.perf_counter() - t:.1f} s)")
        config = TrainConfig(
            data=f"cub:{root}",
            model="vit-tiny-test" if quick else "vit-b16",
            image_size=32 if quick else RUN_PX,
            epochs=1,
            batch_size=batch,
            eagc=True,
            reference_epochs=1,
            attribution=10,
            probeset_size=64 if quick else 512,
            soc_k=4 if quick else 16,
            device=str(dev),
            save_features=False,
            # a speed run from random init: a non-finite loss is reported, not a stop
            on_nan="continue",
        )
        setup = prepare(config)  # random init: no --pretrained
        modes = ("off",) if quick else ("fp16", "bf16")
        out = {"steps": steps, "batch_size": batch, "modes": {}}
        for amp in modes:
            out["modes"][amp] = _timed_mode(config, setup, amp, tmp / f"run-{amp}")
        fp16, bf16 = out["modes"].get("fp16"), out["modes"].get("bf16")
        out["bf16_vs_fp16"] = bf16["step_s"] / fp16["step_s"] if fp16 and bf16 else None
        name = "ViT tiny (test)" if quick else "ViT-B/16 (random init)"
        say(f"{name}, batch {batch}, {steps} steps, EAGC + probe every step, {dev}")
        _say_modes(out, say)
        return out
    finally:
        remove_tree(tmp)


def _timed_mode(config: TrainConfig, setup, amp: str, run_dir: Path) -> dict:
    """Train ``config`` under ``amp`` into ``run_dir``; its steady-state speed and memory."""
    import dataclasses

    dev = setup.device
    marks = {}

    def on_step(done, total, loss):
        if done in (1, total):  # the two timing points, synchronised
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            marks[done] = time.perf_counter()

    train(dataclasses.replace(config, amp=amp), run_dir, setup, on_step=on_step)
    record = _last_epoch(run_dir)
    last = max(marks)
    step_s = (marks[last] - marks[1]) / max(last - 1, 1)
    return {
        "nonfinite_loss_run": record.get("nonfinite_loss_run"),
        "step_s": step_s,
        "samples_per_s": config.batch_size / step_s,
        "images_per_s": 2 * config.batch_size / step_s,  # two views per sample
        "peak_gpu_memory_mib": record.get("peak_gpu_memory_mib"),
    }


def _say_modes(out: dict, say) -> None:
    for amp, m in out["modes"].items():
        peak = m["peak_gpu_memory_mib"]
        line = (
            f"  {amp:5s} step {m['step_s'] * 1000:8.1f} ms  {m['samples_per_s']:8.1f} "
            f"samples/s  {m['images_per_s']:8.1f} images/s  peak "
            + ("-" if peak is None else f"{peak / 1024:.2f} GiB")
        )
        if m["nonfinite_loss_run"]:
            line += f"  (non-finite losses, longest run {m['nonfinite_loss_run']})"
        say(line)
    if out["bf16_vs_fp16"] is not None:
        say(f"  step time bf16 / fp16: {out['bf16_vs_fp16']:.3f}")


def _last_epoch(run_dir) -> dict:
    epochs = RunReader(run_dir).epochs
    return epochs[-1] if epochs else {}
