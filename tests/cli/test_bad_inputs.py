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
from entangle.cli.app import main
from entangle.models.backbones import ResidualMLP
from entangle.models.heads import GCDHead

sys.path.insert(0, str(Path(__file__).parents[1] / "support"))
from bombs import declare_size  # noqa: E402


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


def bomb_npz(tmp: Path) -> Path:
    """A features file whose ``features`` entry declares 3 GiB in a few KB."""
    path = tmp / "bomb.npz"
    np.savez(
        path,
        features=np.ones((20, 4), np.float32),
        labels=np.arange(20) % 4,
        labeled=np.arange(20) < 10,
    )
    return declare_size(path, "features.npy", 3 << 30)


def bomb_checkpoint(tmp: Path) -> str:
    """An entangle checkpoint whose first storage declares 4 GiB in a few KB."""
    return str(declare_size(tiny_checkpoint(tmp / "bomb.pt"), "/data/0", 4 << 30))


def huge_arch_checkpoint(tmp: Path) -> str:
    """An entangle checkpoint whose meta.arch asks for a ViT of 65536 blocks, 65536-d."""
    path = tiny_checkpoint(tmp / "arch.pt")
    obj = torch.load(path, weights_only=True)
    config = {"depth": 65536, "embed_dim": 65536, "num_heads": 1}
    obj["meta"]["arch"]["backbone"] = {"kind": "vit", "config": config}
    torch.save(obj, path)
    return str(path)


def one_key_deep_checkpoint(tmp: Path) -> str:
    """An entangle checkpoint whose one extra key ``blocks.99999999.*`` implies 10^8 blocks."""
    path = tiny_checkpoint(tmp / "deep.pt")
    obj = torch.load(path, weights_only=True)
    obj["backbone"]["blocks.99999999.fc1.weight"] = torch.zeros(1)
    torch.save(obj, path)
    return str(path)


def stride_0_checkpoint(tmp: Path) -> str:
    """An entangle checkpoint holding a 65536 x 65536 stride-0 view: 4 stored bytes, 16 GiB."""
    path = tiny_checkpoint(tmp / "view.pt")
    obj = torch.load(path, weights_only=True)
    obj["backbone"]["stem.weight"] = torch.zeros(1).expand(1 << 16, 1 << 16)
    torch.save(obj, path)
    return str(path)


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
                    "entangle.runs.io:atomic_text",
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
                    t, "entangle.report.demo:run_demo", {"out": str(t / "keep"), "force": True}
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
                    "entangle.runs.io:atomic_text",
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


def report_run(tmp: Path, damage: str) -> Path:
    """A small run directory for ``entangle report``, damaged in one way."""
    from tests.report.fake_runs import make_run

    run = make_run(tmp / "run", name="r", n_steps=10, n_per_class=8, feature_epochs=(1,))
    npz = run / "features" / "epoch_001.npz"
    if damage == "truncated-npz":
        npz.write_bytes(npz.read_bytes()[:300])
    elif damage == "key-missing-npz":
        np.savez(npz, something=np.ones(3))
    elif damage == "directory-npz":
        npz.unlink()
        npz.mkdir()
    elif damage == "object-npz":
        np.savez(npz, features=np.array([System("true")] * 3, dtype=object))
    elif damage == "bomb-npz":  # 3 GiB declared in a few KB: a zip bomb's signature
        declare_size(npz, "features.npy", 3 << 30)
    elif damage == "step-not-integer":
        with open(run / "steps.jsonl", "ab") as fh:
            fh.write(b'{"step": "seven", "time": 0}\n')
    return run


def report(damage: str):
    return lambda t: ["report", str(report_run(t, damage)), "--out", str(t / "out")]


def ablate_spec(tmp: Path, text: str) -> str:
    (tmp / "grid.toml").write_text(text)
    return str(tmp / "grid.toml")


def corrupt_cell(tmp: Path) -> list[str]:
    spec = ablate_spec(tmp, '[base]\ndata = "synthetic"\nepochs = 1\n[grid]\nseed = [0]\n')
    (tmp / "out" / "cells" / "seed=0").mkdir(parents=True)
    (tmp / "out" / "grid.json").write_text("{}")
    (tmp / "out" / "cells" / "seed=0" / "run.json").write_text('{"config": {"lr"')
    return ["ablate", spec, "--out", str(tmp / "out")]


def other_settings_run(tmp: Path) -> str:
    from entangle.runs.directory import RunWriter

    with RunWriter(tmp / "run", config={"data": "synthetic", "lr": 5.0}, seed=0):
        pass
    return str(tmp / "run")


def train(*args):
    return lambda t: ["train", *[a(t) if callable(a) else a for a in args]]


NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")

# (id, build the command line in a fresh folder, phrase the error line must contain)
TABLE = [
    ("train-run-is-a-file", train(lambda t: str(t / "keep" / "precious.txt")), "is a file"),
    ("train-read-only-location", train("/proc/entangle-run"), "cannot create the run directory"),
    ("train-300-character-name", train(lambda t: str(t / ("x" * 300))), "cannot create the run"),
    ("train-device-tpu9", train(lambda t: str(t / "out"), "--device", "tpu9"), "use --device"),
    ("train-lr-negative", train(lambda t: str(t / "out"), "--lr", "-1"), "--lr"),
    ("train-lr-nan", train(lambda t: str(t / "out"), "--lr", "nan"), "finite number"),
    ("train-epochs-0", train(lambda t: str(t / "out"), "--epochs", "0"), "epochs must be >= 1"),
    (
        "train-old-classes-binary-file",
        train(lambda t: str(t / "out"), "--old-classes", "/bin/ls"),
        "not readable text",
    ),
    (
        "train-other-settings-before-pretraining",
        train(other_settings_run, "--data", "synthetic"),
        "other settings",
    ),
    (
        "train-path-with-markup",
        # the file keep/a[/]b[red]c: rich would read [/] and [red] as markup
        lambda t: ["train", f"{t / 'keep'}/a[/]b[red]c"],
        "a[/]b[red]c is a file",
    ),
    ("report-truncated-npz", report("truncated-npz"), "not a readable .npz"),
    ("report-key-missing-npz", report("key-missing-npz"), "lacks features"),
    ("report-directory-npz", report("directory-npz"), "not a readable .npz"),
    ("report-object-npz", report("object-npz"), "hold Python objects"),
    ("report-step-not-integer", report("step-not-integer"), "not an integer"),
    ("report-npz-bomb", report("bomb-npz"), "ENTANGLE_MAX_INFLATE_RATIO=N"),
    (
        "analyze-npz-bomb",
        analyze("--data", lambda t: f"features:{bomb_npz(t)}", "--out", out),
        "ENTANGLE_MAX_INFLATE_RATIO=N",
    ),
    (
        "analyze-checkpoint-bomb",
        analyze(lambda t: bomb_checkpoint(t), "--out", out),
        "ENTANGLE_MAX_INFLATE_RATIO=N",
    ),
    (
        "analyze-meta-arch-65536-blocks",
        analyze(lambda t: huge_arch_checkpoint(t), "--out", out),
        "ENTANGLE_MAX_MODEL_DEPTH=N",
    ),
    (
        "analyze-stride-0-view-of-16-gib",
        analyze(stride_0_checkpoint, "--out", out),
        "ENTANGLE_MAX_CHECKPOINT_BYTES=N",
    ),
    (
        "analyze-one-key-asks-for-1e8-blocks",
        analyze(one_key_deep_checkpoint, "--out", out),
        "100000000 blocks",
    ),
    (
        "ablate-variant-as-list",
        lambda t: [
            "ablate",
            ablate_spec(t, '[base]\nvariant = ["eagc"]\n[grid]\nseed = [0]\n'),
            "--out",
            str(t / "out"),
            "--dry-run",
        ],
        "list them under [grid]",
    ),
    ("ablate-corrupt-cell-run-json", corrupt_cell, "is damaged"),
]
CASES += [(name, build, phrase) for name, build, phrase in TABLE]


# ---------------------------------------------------------------- issue 19's cases
def damaged_checkpoint(tmp: Path, damage: str) -> str:
    """An entangle-layout checkpoint whose backbone state is damaged in one way."""
    path = tiny_checkpoint(tmp / f"{damage}.pt")
    obj = torch.load(path, weights_only=True)
    state = obj["backbone"]
    if damage == "stem-1d":
        state["stem.weight"] = torch.ones(16)
    elif damage == "no-blocks":
        for key in [k for k in state if k.startswith("blocks.")]:
            del state[key]
    elif damage == "stray-block":
        state["blocks.x.weight"] = torch.ones(3)
    torch.save(obj, path)
    return str(path)


def run_json_with(tmp: Path, key: str, value, *, complete: bool = True) -> str:
    """A small run directory whose run.json has ``key`` set to ``value``."""
    import json

    from tests.report.fake_runs import make_run

    run = make_run(
        tmp / "run", name="r", n_steps=6, n_per_class=6, feature_epochs=(1,), complete=complete
    )
    meta = json.loads((run / "run.json").read_text())
    meta[key] = value
    (run / "run.json").write_text(json.dumps(meta))
    return str(run)


def report_of(key: str, value):
    return lambda t: ["report", run_json_with(t, key, value), "--out", str(t / "out")]


def dots_spec(tmp: Path) -> list[str]:
    """A spec named ``...toml`` (stem ``..``) with the default output folder (cwd: ``tmp``)."""
    (tmp / "...toml").write_text('[base]\ndata = "synthetic"\nepochs = 1\n[grid]\nseed = [0]\n')
    return ["ablate", "...toml", "--dry-run"]


def full_disk(monkeypatch) -> None:
    from entangle.runs import io as runio

    monkeypatch.setattr(runio, "os", FullDisk())


def no_reports_folder(tmp: Path, out: str, err: str) -> None:
    assert not (tmp / "reports").exists()


def secret_not_echoed(tmp: Path, out: str, err: str) -> None:
    assert "SECRET" not in out + err


def secret_file(tmp: Path) -> str:
    (tmp / "secret.txt").write_text("root:x:0:0:SECRET-LINE\n")
    return str(tmp / "secret.txt")


def emoji_path(tmp: Path) -> str:
    (tmp / "exp:smile:1").write_text("not a folder")
    return str(tmp / "exp:smile:1")


def small_analyze(*args):
    """``analyze`` on a tiny checkpoint, small settings (no t-SNE, no gradients, no report)."""
    fast = ["--max-samples", "60", "--grad-batches", "0", "--no-tsne", "--no-report"]
    return analyze(*args, "--out", out, *fast)


# (id, command line from a fresh folder, phrase of the one line, monkeypatch setup, check)
ISSUE_19 = [
    (
        "analyze-checkpoint-1d-stem-weight",
        small_analyze(lambda t: damaged_checkpoint(t, "stem-1d")),
        "stem.weight must be a [dim, in_dim] matrix, got (16,)",
    ),
    (
        "analyze-checkpoint-without-blocks",
        small_analyze(lambda t: damaged_checkpoint(t, "no-blocks")),
        "no blocks.* tensors",
    ),
    (
        "analyze-checkpoint-stray-blocks-x",
        small_analyze(lambda t: damaged_checkpoint(t, "stray-block")),
        "blocks.x.* is not a numbered block",
    ),
    ("report-run-json-config-list", report_of("config", [1]), "'config' must be an object"),
    ("report-run-json-resumed-at-5", report_of("resumed_at", 5), "'resumed_at' must be a list"),
    ("report-run-json-calibration-5", report_of("calibration", 5), "'calibration' must be"),
    (
        "report-run-json-calibration-without-aperture",
        report_of("calibration", {"auto_aperture": 1.0}),
        "a positive number 'aperture'",
    ),
    ("report-run-json-name-5", report_of("name", 5), "'name' must be a string"),
    ("report-run-json-seed-true", report_of("seed", True), "'seed' must be an integer"),
    (
        "train-resume-run-json-config-list",
        train(lambda t: run_json_with(t, "config", [1], complete=False), "--data", "synthetic"),
        "'config' must be an object",
    ),
    (
        "train-resume-run-json-resumed-at-5",
        train(lambda t: run_json_with(t, "resumed_at", 5, complete=False)),
        "'resumed_at' must be a list",
    ),
    ("ablate-spec-named-dots-toml", dots_spec, "gives no folder name", None, no_reports_folder),
    (
        "train-reference-that-runs-code",
        train(lambda t: str(t / "out"), "--reference", lambda t: str(system_pickle(t, "zip"))),
        "pass --trust-checkpoint",
    ),
    (
        "train-pretrained-that-runs-code",
        train(lambda t: str(t / "out"), "--pretrained", lambda t: str(system_pickle(t, "raw"))),
        "pass --trust-checkpoint",
    ),
    ("usage-train-without-run-folder", lambda t: ["train"], "Missing argument 'out'"),
    (
        "usage-train-lr-not-a-number",
        train(lambda t: str(t / "out"), "--lr", "abc"),
        "Invalid value for '--lr'",
    ),
    ("usage-unknown-command", lambda t: ["nosuch"], "No such command 'nosuch'"),
    ("usage-unknown-option", train(lambda t: str(t / "out"), "--bogus"), "No such option"),
    ("usage-out-without-value", lambda t: ["analyze", "--out"], "requires an argument"),
    ("usage-report-without-runs", lambda t: ["report"], "Missing argument"),
    (
        "usage-seed-overflow",
        train(lambda t: str(t / "out"), "--seed", "1180591620717411303424"),
        "--seed",
    ),
    ("train-emoji-code-in-path", train(emoji_path), "exp:smile:1 is a file"),
    (
        "train-old-classes-file-named-never-echoed",
        train(lambda t: str(t / "out"), "--data", "synthetic", "--old-classes", secret_file),
        "secret.txt",
        None,
        secret_not_echoed,
    ),
    (
        "report-full-disk",
        lambda t: ["report", str(report_run(t, "none")), "--out", str(t / "out")],
        "No space left on device",
        full_disk,
    ),
    (
        "analyze-full-disk",
        analyze(lambda t: str(tiny_checkpoint(t / "ck.pt")), "--out", out, "--grad-batches", "0"),
        "No space left on device",
        full_disk,
    ),
]
CASES += ISSUE_19
CASES.append(
    pytest.param(
        train(lambda t: str(t / "out"), "--device", "cuda:0"),
        "CUDA device(s)",
        None,
        None,
        id="train-device-cuda-without-gpu",
        marks=NO_GPU,
    )
)


def run_main(argv: list[str], capsys, monkeypatch) -> tuple[int, str]:
    code, out, err = run_main_both(argv, capsys, monkeypatch)
    return code, err


def run_main_both(argv: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["entangle", *argv])
    with pytest.raises(SystemExit) as info:
        main()
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def _param(case):
    if hasattr(case, "marks"):
        return case
    name, build, phrase, *rest = case
    patch, check = (*rest, None, None)[:2]
    return pytest.param(build, phrase, patch, check, id=name)


@pytest.mark.parametrize(("build", "phrase", "patch", "check"), [_param(c) for c in CASES])
def test_bad_input_gives_one_line_and_exit_2(
    build, phrase, patch, check, tmp_path, capsys, monkeypatch
):
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "precious.txt").write_text("keep me")
    (tmp_path / "keep" / "a[").mkdir()
    (tmp_path / "keep" / "a[" / "]b[red]c").write_text("")
    monkeypatch.chdir(tmp_path)
    argv = build(tmp_path)
    if patch is not None:
        patch(monkeypatch)
    code, out, err = run_main_both(argv, capsys, monkeypatch)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert phrase in lines[0], lines[0]
    assert "Traceback" not in err + out
    # stdout holds at most the progress of work done before the failure, never the error
    assert "error" not in out.lower(), out
    # nothing the file asked for happened
    assert not (tmp_path / "victim").exists()
    assert (tmp_path / "keep" / "precious.txt").read_text() == "keep me"
    if argv[0] == "analyze" and patch is None:
        assert not (tmp_path / "out").exists()
    if check is not None:
        check(tmp_path, out, err)


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


class FullDisk:
    """``os`` as ``entangle.runs.io`` sees it on a full disk: every fsync fails."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def fsync(fd):
        raise OSError(28, "No space left on device")


@pytest.mark.parametrize(("command", "shown"), [("train", "[vit] extra"), ("ablate", "[base]")])
def test_literal_brackets_stay_visible_in_help(command, shown, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(sys, "argv", ["entangle", command, "--help"])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 0
    assert shown in capsys.readouterr().out


# ---------------------------------------------------------------- hostile, yet fine: exit 0
def nan_features_run(tmp: Path) -> str:
    """A run as ``train --on-nan continue`` leaves it: the saved features are all NaN."""
    from tests.report.fake_runs import make_run

    run = make_run(tmp / "run", name="r", n_steps=6, n_per_class=6, feature_epochs=(1,))
    npz = run / "features" / "epoch_001.npz"
    arrays = dict(np.load(npz))
    arrays["features"][:] = np.nan
    arrays["logits"][:] = np.nan
    np.savez(npz, **arrays)
    return str(run)


def nan_checkpoint(tmp: Path) -> str:
    """A checkpoint saved after non-finite losses: every weight NaN."""
    path = tiny_checkpoint(tmp / "nan.pt")
    obj = torch.load(path, weights_only=True)
    for part in ("backbone", "head"):
        for value in obj[part].values():
            if value.is_floating_point():
                value.fill_(float("nan"))
    torch.save(obj, path)
    return str(path)


def mathtext_run(tmp: Path) -> str:
    from tests.report.fake_runs import make_run

    names = ["$\\frac{", "a$b", "$x^{", "\\", "e", "f"]
    make_run(tmp / "run", name="$\\frac{", n_steps=6, n_per_class=6, feature_epochs=(1,),
             class_names=names)  # fmt: skip
    return str(tmp / "run")


def surrogate_checkpoint(tmp: Path) -> str:
    """What ``mödel.pt`` is called inside Python under ``LC_ALL=C PYTHONUTF8=0``."""
    name = "m\udcc3\udcb6del.pt"
    tiny_checkpoint(tmp / name)
    return str(tmp / name)


def says_nan_in_report(tmp: Path, out: str) -> None:
    html = (tmp / "out" / "index.html").read_text(encoding="utf-8")
    assert "features are non-finite" in html


def nan_metrics_with_reasons(tmp: Path, out: str) -> None:
    from entangle.runs.directory import RunReader

    (run,) = [p for p in (tmp / "out").iterdir() if p.is_dir()]
    (record,) = RunReader(run).epochs
    assert record["kmeans"] == {"all": None, "old": None, "new": None}  # NaN is stored as null
    assert "NaN or inf features" in record["kmeans_nan_reason"]
    assert record["acc_all"] is None and record["soc"] is None and record["nan_reason"]
    assert any("gradient diagnostics skipped" in n for n in record["notes"])


def name_as_typed(tmp: Path, out: str) -> None:
    html = (tmp / "out" / "report" / "index.html").read_text(encoding="utf-8")
    assert "mödel.pt" in html


FINE = [
    ("report-nan-features", lambda t: ["report", nan_features_run(t), "--out", out(t)],
     says_nan_in_report),
    ("analyze-nan-checkpoint",
     analyze(nan_checkpoint, "--out", out, "--max-samples", "60", "--grad-batches", "1",
             "--no-tsne", "--no-report"),
     nan_metrics_with_reasons),
    ("report-mathtext-labels", lambda t: ["report", mathtext_run(t), "--out", out(t)], None),
    ("analyze-non-utf8-locale-file-name",
     analyze(surrogate_checkpoint, "--out", out, "--max-samples", "60", "--grad-batches", "0",
             "--no-tsne", "--no-kmeans"),
     name_as_typed),
]  # fmt: skip


@pytest.mark.parametrize(("build", "check"), [pytest.param(*c[1:], id=c[0]) for c in FINE])
def test_hostile_but_valid_input_succeeds(build, check, tmp_path, capsys, monkeypatch):
    """These crashed with a traceback (issue 19); the right outcome is a result, exit 0."""
    code, output, err = run_main_both(build(tmp_path), capsys, monkeypatch)
    assert code == 0, err
    assert "Traceback" not in output + err
    if check is not None:
        check(tmp_path, output)


def test_a_non_ascii_run_name_under_the_c_locale(tmp_path):
    """The real thing for the row above: a subprocess under ``LC_ALL=C PYTHONUTF8=0``."""
    import subprocess

    from tests.report.fake_runs import make_run

    make_run(tmp_path / "rün", name=None, n_steps=6, n_per_class=6, feature_epochs=(1,))
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONPATH": os.getcwd()}
    env.pop("LANG", None)
    argv = [sys.executable, "-m", "entangle", "report", "rün", "--out", "rep"]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    html = (tmp_path / "rep" / "index.html").read_text(encoding="utf-8")
    assert "rün" in html
