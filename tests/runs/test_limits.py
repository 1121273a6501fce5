"""Size limits on untrusted input: declared sizes are checked before anything is allocated."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from entangle.errors import EntangleValueError
from entangle.runs.limits import (
    CHECKPOINT_BYTES,
    INFLATE_FLOOR,
    LIMITS,
    MODEL_DEPTH,
    MODEL_PARAMS,
    NPZ_BYTES,
    VIT_IMAGE_SIZE,
    VIT_TOKENS,
    Limit,
    check_zip,
    zip_declared_bytes,
)
from entangle.runs.untrusted import load_npz

sys.path.insert(0, str(Path(__file__).parents[1] / "support"))
from bombs import declare_size, deflated_zeros_npz, npy_header_claiming  # noqa: E402


def features_npz(path: Path, n: int = 200, d: int = 16) -> Path:
    rng = np.random.default_rng(0)
    np.savez(
        path,
        features=rng.normal(size=(n, d)).astype(np.float32),
        labels=np.arange(n) % 4,
        labeled=np.arange(n) < n // 2,
    )
    return path


# ------------------------------------------------------------------------------ the settings


def test_a_setting_overrides_the_default_with_binary_suffixes(monkeypatch):
    limit = Limit("ENTANGLE_TEST_LIMIT", 5, "bytes of a test", binary=True)
    assert limit.value() == 5
    for raw, value in (("7", 7), ("2K", 2048), ("3 GiB", 3 << 30), ("1t", 1 << 40), (" ", 5)):
        monkeypatch.setenv("ENTANGLE_TEST_LIMIT", raw)
        assert limit.value() == value, raw


@pytest.mark.parametrize("raw", ["-1", "1.5", "lots", "0x10"])
def test_a_malformed_setting_is_named_not_ignored(monkeypatch, raw):
    monkeypatch.setenv("ENTANGLE_MAX_NPZ_BYTES", raw)
    with pytest.raises(EntangleValueError, match=r"ENTANGLE_MAX_NPZ_BYTES=.*not a valid limit"):
        NPZ_BYTES.value()


def test_a_count_limit_takes_no_byte_suffix(monkeypatch):
    monkeypatch.setenv("ENTANGLE_MAX_MODEL_DEPTH", "2K")
    with pytest.raises(EntangleValueError, match="ENTANGLE_MAX_MODEL_DEPTH"):
        MODEL_DEPTH.value()


def test_every_limit_has_its_own_setting():
    assert len({limit.env for limit in LIMITS}) == len(LIMITS)
    assert all(limit.env.startswith("ENTANGLE_MAX_") for limit in LIMITS)


def test_the_defaults_admit_real_files():
    """Real inputs stay under the defaults: CIFAR-100's 50k x 768 float32 features with
    100-class logits, ImageNet-1k's 1.28M x 768 features, a ViT-g/14 (1.1e9 float32
    parameters) with room for its optimizer moments."""
    assert 50_000 * (768 + 100) * 4 < NPZ_BYTES.default
    assert 1_281_167 * 768 * 4 < NPZ_BYTES.default
    assert 1.1e9 * 4 * 1.5 < CHECKPOINT_BYTES.default
    assert 1.1e9 < MODEL_PARAMS.default and 48 <= MODEL_DEPTH.default
    assert 1024 <= VIT_IMAGE_SIZE.default
    assert (1024 // 16) ** 2 + 1 + 4 <= VIT_TOKENS.default  # SAM's ViT, with 4 registers


# ---------------------------------------------------------------------------- zip archives


def test_declared_sizes_come_from_the_central_directory(tmp_path):
    path = features_npz(tmp_path / "f.npz")
    with zipfile.ZipFile(path) as archive:
        real = sum(len(archive.read(i)) for i in archive.infolist())
    assert zip_declared_bytes(path) == (real, path.stat().st_size)
    declare_size(path, "features.npy", 1 << 40)
    unpacked, on_disk = zip_declared_bytes(path)
    assert unpacked > 1 << 40 and on_disk < 1 << 16


def test_a_declared_terabyte_is_refused_by_the_byte_limit(tmp_path):
    path = declare_size(features_npz(tmp_path / "f.npz"), "features.npy", 1 << 40)
    with pytest.raises(EntangleValueError, match=r"declares 1\.0 TiB.*ENTANGLE_MAX_NPZ_BYTES=N"):
        check_zip(path, NPZ_BYTES, "features file")


def test_a_deflated_zeros_bomb_is_refused_by_its_ratio(tmp_path):
    """Real zeros that really inflate ~1000x, just over the ratio check's floor: refused from
    the central directory, so nothing is inflated."""
    path = deflated_zeros_npz(tmp_path / "bomb.npz", INFLATE_FLOOR + (1 << 20))
    assert path.stat().st_size < INFLATE_FLOOR / 200
    with pytest.raises(EntangleValueError) as info:
        load_npz(path)
    message = str(info.value)
    assert "ENTANGLE_MAX_INFLATE_RATIO=N" in message and "\n" not in message
    assert "above the limit of 100" in message


def test_the_ratio_check_spares_small_archives(tmp_path):
    """Below the floor a well-compressed file loads: labels and masks deflate far below 1%."""
    path = deflated_zeros_npz(tmp_path / "small.npz", 1 << 20)
    assert zip_declared_bytes(path)[0] / path.stat().st_size > 100
    assert load_npz(path)["features"].shape == ((1 << 20) // 256, 64)


def test_a_file_at_the_limit_loads_and_one_byte_less_refuses(tmp_path, monkeypatch):
    path = features_npz(tmp_path / "f.npz")
    declared, _ = zip_declared_bytes(path)
    monkeypatch.setenv("ENTANGLE_MAX_NPZ_BYTES", str(declared))
    assert load_npz(path)["features"].shape == (200, 16)
    monkeypatch.setenv("ENTANGLE_MAX_NPZ_BYTES", str(declared - 1))
    with pytest.raises(EntangleValueError, match=rf"above the limit of .*\({declared - 1} bytes\)"):
        load_npz(path)


def test_an_npy_header_larger_than_its_entry_is_refused_before_allocation(tmp_path):
    """A header may claim a shape its entry cannot hold; numpy would allocate the shape."""
    path = tmp_path / "lies.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("features.npy", npy_header_claiming((1 << 20, 1 << 20)) + bytes(64))
        zf.writestr("labels.npy", npy_header_claiming((4,), "<i8") + bytes(32))
    with pytest.raises(EntangleValueError, match=r"features declares shape \(1048576, 1048576\)"):
        load_npz(path)


# ------------------------------------------------------------------------------- checkpoints


def test_a_checkpoint_with_a_huge_declared_storage_is_refused(tmp_path):
    from entangle.checkpoints.safe import CheckpointError, safe_load

    path = tmp_path / "c.pt"
    torch.save({"model": {"w": torch.arange(10.0)}}, path)
    declare_size(path, "/data/0", 5 << 30)
    with pytest.raises(CheckpointError, match=r"declares 5\.0 GiB.*ENTANGLE_MAX_INFLATE_RATIO"):
        safe_load(path)
    declare_size(path, "/data/0", 9 << 30)
    with pytest.raises(CheckpointError, match=r"ENTANGLE_MAX_CHECKPOINT_BYTES=N"):
        safe_load(path, trust=True)  # the size check comes before trust matters


def test_a_checkpoint_at_the_limit_loads(tmp_path, monkeypatch):
    from entangle.checkpoints.safe import CheckpointError, safe_load

    for legacy in (False, True):
        path = tmp_path / f"c{legacy}.pt"
        torch.save({"w": torch.arange(10.0)}, path, _use_new_zipfile_serialization=not legacy)
        size = zip_declared_bytes(path)[0] if not legacy else path.stat().st_size
        monkeypatch.setenv("ENTANGLE_MAX_CHECKPOINT_BYTES", str(size))
        assert safe_load(path)["w"].tolist() == list(range(10))
        monkeypatch.setenv("ENTANGLE_MAX_CHECKPOINT_BYTES", str(size - 1))
        with pytest.raises(CheckpointError, match="ENTANGLE_MAX_CHECKPOINT_BYTES"):
            safe_load(path)


def test_an_npy_header_that_cannot_be_read_is_refused_not_left_to_numpy(tmp_path):
    """Its shape, hence the size numpy would allocate, is unknown: refused by name."""
    path = tmp_path / "damaged.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("features.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': broken}")
    with pytest.raises(EntangleValueError, match="array features has a damaged .npy header"):
        load_npz(path)


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_every_npy_format_version_is_measured_and_loads(tmp_path, version):
    import io

    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.arange(12.0).reshape(3, 4), version=version)
    path = tmp_path / "v.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("features.npy", buf.getvalue())
    assert load_npz(path)["features"].shape == (3, 4)
