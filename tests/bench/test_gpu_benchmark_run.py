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
