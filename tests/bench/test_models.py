"""The bench models: sizes per device, and one fixture whose variants share weights and batches."""

from __future__ import annotations

import pytest
import torch

from entangle.bench.models import BENCH_COORDINATORS, BenchFixture, mlp_spec, vit_spec
from entangle.errors import EntangleValueError
from entangle.models.vit import VIT_CONFIGS

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_vit_sizes_follow_the_device_and_the_overrides():
    quick = vit_spec("builtin", None, True, None, None, CPU)
    assert (quick.input_shape, quick.batch_size, quick.probe_set_size) == ((3, 32, 32), 8, 48)
    assert "vit-tiny-test" in quick.description and quick.head == "tiny"
    gpu = vit_spec("builtin", None, False, None, None, CUDA)  # sizes only: nothing is built
    assert (gpu.input_shape, gpu.batch_size, gpu.num_classes) == ((3, 224, 224), 64, 100)
    assert "vit-b16" in gpu.description and "197 tokens" in gpu.description
    cpu = vit_spec("timm", 4, False, 100, 96, CPU)
    assert (cpu.input_shape, cpu.batch_size, cpu.probe_set_size) == ((3, 96, 96), 4, 100)
    assert "vit-s16 (timm)" in cpu.description and cpu.head == "simgcd"
    patch = VIT_CONFIGS["vit-s16"].patch_size
    with pytest.raises(EntangleValueError, match=f"not a multiple of the patch size {patch}"):
        vit_spec("builtin", None, False, None, patch + 1, CPU)


def test_mlp_sizes():
    quick, full = mlp_spec(None, True, None), mlp_spec(32, False, 64)
    assert (quick.batch_size, quick.probe_set_size, quick.input_shape) == (16, 48, (64,))
    assert "D=32, depth=3" in quick.description and "D=128, depth=4" in full.description
    assert (full.batch_size, full.probe_set_size) == (32, 64)


@pytest.fixture(scope="module")
def fixture():
    return BenchFixture(mlp_spec(None, True, None), CPU, seed=0)


def test_the_fixture_sizes_and_its_probe_set(fixture):
    dims = fixture.dims()
    assert dims["rows_per_step"] == 2 * fixture.spec.batch_size == 32
    # SOC's k stays below the rank of the 24 labeled and 12 novel probe rows
    assert int(fixture.probe_labeled.sum()) == 24 and int(fixture.probe_novel.sum()) == 12
    assert dims["soc_k"] == fixture.k == 11
    assert not (fixture.probe_labeled & fixture.probe_novel).any()
    probed = sum(p.numel() for p in fixture.probed)
    assert 0 < dims["probed_parameters"] == probed < dims["trainable_parameters"]
    for batch in fixture.batches:  # labeled rows carry old classes only
        assert (batch["labels"][batch["labeled"]] < fixture.spec.num_classes // 2).all()
        assert batch["views"].shape == (32, 64) and batch["labeled2"].shape == (32,)


def test_the_reference_shares_the_frozen_prefix_and_differs_in_the_last_block(fixture):
    ref, own = fixture.reference.state_dict(), fixture.backbone.state_dict()
    last = f"blocks.{len(fixture.backbone.blocks) - 1}."
    for key, value in ref.items():
        if key.startswith(last):
            assert not torch.equal(value, own[key]), key
        else:
            assert torch.equal(value, own[key]), key
    assert not any(p.requires_grad for p in fixture.reference.parameters())


def test_a_plain_step_moves_the_trainable_weights_only(fixture):
    frozen = {k: v.clone() for k, v in fixture.backbone.stem.state_dict().items()}
    before = [p.detach().clone() for p in fixture.params]
    calls = fixture.calls
    fixture.plain()
    assert fixture.calls == calls + 1
    assert all(torch.equal(v, fixture.backbone.stem.state_dict()[k]) for k, v in frozen.items())
    assert any(not torch.equal(a, p) for a, p in zip(before, fixture.params, strict=True))


def test_a_probed_step_keeps_no_records_and_the_probeset_matches_a_full_reembedding(fixture):
    fixture.probe_step(fixture.probe_every_step)
    assert fixture.probe_every_step.records == []
    assert fixture.soc_difference() < 1e-5


def test_every_variant_is_offered_with_its_steps(fixture):
    variants = fixture.variants()
    assert variants["probe_every_10"][1] == 10
    assert all(steps == 1 for name, (_, steps) in variants.items() if name != "probe_every_10")
    coordinated = {n for n in variants if n.startswith("coordinator_")}
    try:
        import torchjd  # noqa: F401
    except ImportError:
        assert coordinated == set()
    else:
        assert coordinated == {f"coordinator_{n}" for n in BENCH_COORDINATORS}
