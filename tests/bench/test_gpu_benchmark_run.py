"""The GPU check's part 4: the fake CUB tree reads as CUB; the tiny run trains and reports."""

from __future__ import annotations

import pytest

from entangle.bench import gpu_benchmark_run


def test_fake_cub_tree_is_read_as_cub(tmp_path):
    from entangle.data.benchmarks import read_benchmark

    root = gpu_benchmark_run.write_fake_cub(
        tmp_path / "cub", train_per_class=2, test_per_class=1, px=8
    )
    split = read_benchmark("cub", root)
    # SimGCD's split of 400 training images (100 SSB known classes x 2): int(0.5 * 200) labeled
    assert split.counts()["parts"] == {"labeled": 100, "unlabeled": 300, "test": 200}
    from PIL import Image

    first = next((root / "CUB_200_2011" / "images").rglob("*.jpg"))
    with Image.open(first) as img:
        assert img.size == (8, 8) and img.format == "JPEG"


@pytest.mark.extras  # torchvision's transforms
@pytest.mark.slow
def test_benchmark_run_tiny_form_trains_and_reports(tmp_path, monkeypatch):
    pytest.importorskip("torchvision")
    import tempfile

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    lines = []
    out = gpu_benchmark_run.benchmark_run("cpu", quick=True, say=lines.append)
    assert (out["steps"], out["batch_size"]) == (2, 100)
    (mode,) = out["modes"].values()
    assert mode["step_s"] > 0 and mode["images_per_s"] == pytest.approx(2 * mode["samples_per_s"])
    assert mode["peak_gpu_memory_mib"] is None and out["bf16_vs_fp16"] is None
    text = "\n".join(lines)
    assert "400 JPEGs" in text and "EAGC + probe every step" in text and "samples/s" in text
    assert list(tmp_path.iterdir()) == []  # the tree and the runs are removed


@pytest.mark.parametrize(("light", "per_class", "steps"), [(False, 4, 20), (True, 2, 10)])
def test_the_lighter_form_halves_the_steps_of_the_same_batch(
    tmp_path, monkeypatch, light, per_class, steps
):
    """Planted tree, setup and timing: the settings each form hands the training loop."""
    import tempfile

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    trees, configs = [], []

    def tree(root, **kw):
        trees.append(kw)
        return root

    def timed(config, setup, amp, run_dir):
        configs.append((config, amp))
        step = {"fp16": 0.2, "bf16": 0.1}[amp]
        return {"nonfinite_loss_run": 0, "step_s": step, "samples_per_s": 40 / step,
                "images_per_s": 80 / step, "peak_gpu_memory_mib": None}  # fmt: skip

    monkeypatch.setattr(gpu_benchmark_run, "write_fake_cub", tree)
    monkeypatch.setattr(gpu_benchmark_run, "prepare", lambda config: "setup")
    monkeypatch.setattr(gpu_benchmark_run, "_timed_mode", timed)
    out = gpu_benchmark_run.benchmark_run("cpu", light=light, say=lambda line: None)
    assert trees == [{"train_per_class": per_class, "test_per_class": 1, "px": 224}]
    assert (out["steps"], out["batch_size"]) == (steps, 40)
    assert [(c.batch_size, c.model, amp) for c, amp in configs] == [
        (40, "vit-b16", "fp16"),
        (40, "vit-b16", "bf16"),
    ]
    assert out["bf16_vs_fp16"] == pytest.approx(0.5)
