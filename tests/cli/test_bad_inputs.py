"""Bad and hostile inputs to the CLI: one line that says what to do, exit 2, no side effect.

One table: each row builds its input files in a fresh folder, runs ``entangle ...`` through
the console-script entry point (``main``), and names a phrase the one line must contain.
See docs/reliability.md.
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from entangle.checkpoints import save_checkpoint
from entangle.gcd.backbones import ResidualMLP
from entangle.gcd.heads import GCDHead
from entangle_cli.app import main


class System:
    """A pickle payload: unpickling it runs ``os.system(command)``."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def tiny_checkpoint(path: Path, meta: dict | None = None) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(
        path, ResidualMLP(in_dim=64, dim=16, depth=2), GCDHead(16, 10, hidden_dim=32), meta
    )


def factory_in_meta(tmp: Path, factory: str, kwargs: dict, name: str = "model.pt") -> Path:
    """An entangle checkpoint whose ``meta.arch.backbone`` names a callable and its arguments."""
    path = tiny_checkpoint(tmp / name)
    obj = torch.load(path, weights_only=True)
    obj["meta"]["arch"]["backbone"] = {"factory": factory, "kwargs": kwargs}
    torch.save(obj, path)
    return path


def system_pickle(tmp: Path, layout: str) -> Path:
    """A checkpoint whose pickle calls ``os.system("touch VICTIM")``: zip, legacy or raw."""
    payload = {"model": {"w": torch.ones(1)}, "x": System(f"touch {tmp / 'victim'}")}
    path = tmp / f"evil-{layout}.pt"
    if layout == "raw":
        with open(path, "wb") as fh:
            pickle.dump(payload, fh)
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=layout == "zip")
    return path


def object_npz(tmp: Path) -> Path:
    path = tmp / "feats.npz"
    n = 20
    np.savez(
        path,
        features=np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32),
        labels=np.arange(n) % 4,
        labeled=np.arange(n) < 10,
        class_names=np.array([System(f"touch {tmp / 'victim'}")] * 4, dtype=object),
    )
    return path


def analyze(*args: str):
    return lambda tmp: ["analyze", *[a(tmp) if callable(a) else a for a in args]]


def out(tmp: Path) -> str:
    return str(tmp / "out")


# (id, build command line from a fresh folder, phrase the error line must contain)
CASES = [
    (
        "meta-factory-writes-a-file",
        analyze(
            lambda t: str(
                factory_in_meta(
                    t,
                    "entangle.ablation.setups:write_atomic",
                    {"path": str(t / "victim"), "text": "pwned"},
                )
            ),
            "--out",
            out,
        ),
        "--model package.module:factory",
    ),
    (
        "meta-factory-deletes-a-tree",
        analyze(
            lambda t: str(
                factory_in_meta(
                    t, "entangle.gcd.demo:run_demo", {"out": str(t / "keep"), "force": True}
                )
            ),
            "--out",
            out,
        ),
        "does not build",
    ),
    (
        "reference-with-meta-factory",
        analyze(
            lambda t: str(tiny_checkpoint(t / "model.pt")),
            "--reference",
            lambda t: str(
                factory_in_meta(
                    t,
                    "entangle.ablation.setups:write_atomic",
                    {"path": str(t / "victim"), "text": "pwned"},
                    name="reference.pt",
                )
            ),
            "--out",
            out,
        ),
        "does not build",
    ),
    *[
        (
            f"os-system-pickle-{layout}",
            analyze(lambda t, layout=layout: str(system_pickle(t, layout)), "--out", out),
            "system); entangle refused to run it",
        )
        for layout in ("zip", "legacy", "raw")
    ],
    (
        "object-array-features-npz",
        analyze("--data", lambda t: f"features:{object_npz(t)}", "--out", out),
        "class_names hold Python objects",
    ),
]


def run_main(argv: list[str], capsys, monkeypatch) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["entangle", *argv])
    with pytest.raises(SystemExit) as info:
        main()
    return info.value.code, capsys.readouterr().err


@pytest.mark.parametrize(("build", "phrase"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_and_exit_2(build, phrase, tmp_path, capsys, monkeypatch):
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "precious.txt").write_text("keep me")
    argv = build(tmp_path)
    code, err = run_main(argv, capsys, monkeypatch)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert phrase in lines[0], lines[0]
    assert "Traceback" not in err
    # nothing the file asked for happened
    assert not (tmp_path / "victim").exists()
    assert (tmp_path / "keep" / "precious.txt").read_text() == "keep me"
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_named_dotdot_writes_only_inside_out(tmp_path, capsys, monkeypatch):
    """``...pt`` has the stem ``..``: its run directory must still be under --out."""
    work = tmp_path / "work"
    work.mkdir()
    ckpt = tiny_checkpoint(work / "...pt")
    target = work / "out"
    argv = ["analyze", str(ckpt), "--out", str(target), "--max-samples", "60"]
    argv += ["--grad-batches", "0", "--no-tsne", "--no-kmeans", "--no-report"]
    code, err = run_main(argv, capsys, monkeypatch)
    assert code == 0, err
    assert sorted(p.name for p in work.iterdir()) == ["...pt", "out"]
    (run,) = [p for p in target.iterdir()]
    assert (run / "DONE").is_file() and not run.name.startswith(".")
