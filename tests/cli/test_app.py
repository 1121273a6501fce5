"""The entry point: SIGINT / SIGTERM end in one line saying how to resume (issue 19)."""

from __future__ import annotations

import os
import signal
import sys

import pytest

import entangle.gcd.train as recipe
from entangle.cli.app import interrupted_line, main


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_train_prints_how_to_resume(sig, code, tmp_path, capsys, monkeypatch):
    def killed_while_preparing(config, progress=None, trust_checkpoint=False):
        os.kill(os.getpid(), sig)  # the handler raises here, as at any point of a real run
        raise AssertionError("the signal did not interrupt")

    monkeypatch.setattr(recipe, "prepare", killed_while_preparing)
    before = signal.getsignal(sig)
    run = str(tmp_path / "run")
    monkeypatch.setattr(sys, "argv", ["entangle", "train", run, "--data", "synthetic"])
    with pytest.raises(SystemExit) as info:
        main()
    captured = capsys.readouterr()
    assert info.value.code == code
    (line,) = captured.err.strip().splitlines()
    assert f"interrupted by {sig.name}" in line and "resumable" in line
    assert f"rerun: entangle train {run} --data synthetic" in line
    assert "Traceback" not in captured.out + captured.err
    assert signal.getsignal(sig) is before  # the handlers are the caller's again


def test_commands_without_resume_say_to_start_again():
    line = interrupted_line(signal.SIGINT, ["report", "a b", "--out", "r"])
    assert "nothing half-written was kept" in line and "rerun: entangle report 'a b'" in line


def test_any_command_line_ends_in_a_result_or_one_line(tmp_path, capsys, monkeypatch):
    """Hostile argument lists (issue 19): known options with values of any kind, unknown
    options, repeated and missing values, for commands that stop before heavy work
    (``train --show-config``, ``ablate --dry-run``, ``report`` of a missing run): exit 0, or
    exit 2 with one line; never a traceback, and nothing written: these commands name no
    folder they may write, so the working folder and the temporary folder stay as they were."""
    import tempfile

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # temp files land inside
    (tmp_path / "grid.toml").write_text('[base]\ndata = "synthetic"\n[grid]\nseed = [0, 1]\n')
    before = _tree(tmp_path)
    options = st.sampled_from(
        ["--lr", "--epochs", "--seed", "--data", "--model", "--old-classes", "--aperture",
         "--coordinator", "--on-nan", "--nan-limit", "--amp", "--preset", "--accuracy",
         "--labeled-fraction", "--batch-size", "--device", "--eagc", "--no-aga", "--bogus"]
    )  # fmt: skip
    values = st.one_of(
        st.sampled_from(["nan", "-1", "0", "1e999", "1180591620717411303424", "", "auto"]),
        st.sampled_from(["cub:/nowhere", "features:x.npz", "$\\frac{", "exp:smile:1", "a[/]b"]),
        st.integers().map(str),
        st.text(max_size=8).filter(lambda t: "\x00" not in t),
    )
    words = st.lists(st.one_of(options, values), max_size=6)
    commands = st.sampled_from(
        [["train", "run", "--show-config"], ["ablate", "grid.toml", "--dry-run"],
         ["report", "missing-run"]]
    )  # fmt: skip

    @settings(
        max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(command=commands, extra=words)
    def check(command, extra):
        argv = [*command, *extra]
        monkeypatch.setattr(sys, "argv", ["entangle", *argv])
        with pytest.raises(SystemExit) as info:
            main()
        captured = capsys.readouterr()
        assert "Traceback" not in captured.out + captured.err
        assert info.value.code in (0, 2), (argv, captured.err)
        if info.value.code == 2:
            lines = captured.err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), (argv, captured.err)
        assert _tree(tmp_path) == before, argv

    check()


def _tree(root) -> dict:
    """Every entry under ``root``, but hypothesis' own database: a link's target, a file's
    bytes, or "folder"."""
    tree = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] == ".hypothesis":
            continue
        if path.is_symlink():
            tree[str(rel)] = ("link", os.readlink(path))
        else:
            tree[str(rel)] = path.read_bytes() if path.is_file() else "folder"
    return tree
