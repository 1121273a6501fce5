"""How many entangle source files three flows pass through (issue 20's closing note).

``python tests/support/flows.py`` runs, through the CLI app in this process:

- ``analyze``: ``entangle analyze`` of a tiny digits checkpoint (ResidualMLP + GCDHead, saved
  before tracing) to its metrics (``--json --no-report --no-tsne --no-kmeans``, 120 samples);
- ``train step``: ``entangle train --data digits --model digits-mlp --eagc --epochs 1`` from
  the command up to the first return of ``Probe.backward`` (the reference model's training,
  data and model building included: they lie on the way), checked to have called
  ``EAGC.coordinate`` by then;
- ``report``: ``entangle report`` of that finished run (one epoch) to its HTML page.

A file counts when at least one of its functions ran during the flow (a profile hook on every
Python call, in the main thread and in threads started meanwhile); module and class bodies
run by an import do not count, and ``entangle.cli.app`` is imported before any flow. Work done
in a subprocess (a t-SNE worker) is not seen. Prints one line per flow: the count, then the
files. ``python tests/support/flows.py OTHER_CHECKOUT`` counts another checkout of entangle
(e.g. an older commit in a ``git worktree``) with the same flows.
"""

from __future__ import annotations

import inspect
import sys
import tempfile
import threading
from pathlib import Path

from typer.testing import CliRunner

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parents[2]).resolve()
PACKAGE = str(ROOT / "entangle")
# EAGC.coordinate's file: eagc/coordinator.py now, eagc.py before the package split
COORDINATE = {("coordinator.py", "coordinate"), ("eagc.py", "coordinate")}


class _Trace:
    """Collects the entangle files whose functions run; stops at ``until`` (a code name)."""

    def __init__(self, until: tuple[str, str] | None = None):
        self.files: set[str] = set()
        self.names: set[tuple[str, str]] = set()  # (file name, function name) seen
        self.until, self.done = until, False

    def __call__(self, frame, event, arg):
        code = frame.f_code
        if self.done or not code.co_filename.startswith(PACKAGE):
            return
        where = (Path(code.co_filename).name, code.co_name)
        if event == "return" and where == self.until:
            self.done = True
        if event == "call" and code.co_flags & inspect.CO_OPTIMIZED:  # a function, no body
            self.files.add(str(Path(code.co_filename).relative_to(ROOT)))
            self.names.add(where)

    def run(self, app, argv: list[str]) -> None:
        sys.setprofile(self)
        threading.setprofile(self)
        try:
            result = CliRunner().invoke(app, argv)
        finally:
            sys.setprofile(None)
            threading.setprofile(None)
        if result.exit_code != 0:
            raise SystemExit(f"{argv[0]} failed: {result.output[-2000:]}")


def main() -> int:
    sys.path.insert(0, str(ROOT))
    import torch

    from entangle.checkpoints import save_checkpoint
    from entangle.cli.app import app
    from entangle.models.backbones import ResidualMLP
    from entangle.models.heads import GCDHead

    tmp = Path(tempfile.mkdtemp(prefix="entangle-flows-"))
    torch.manual_seed(0)
    ckpt = save_checkpoint(
        tmp / "model.pt", ResidualMLP(in_dim=64, dim=16, depth=2), GCDHead(16, 10, hidden_dim=32)
    )
    flows = {}
    analyze = _Trace()
    analyze.run(
        app,
        ["analyze", str(ckpt), "--out", str(tmp / "analyze"), "--max-samples", "120",
         "--grad-batches", "1", "--batch-size", "16", "--json", "--no-report", "--no-tsne",
         "--no-kmeans"],
    )  # fmt: skip
    flows["analyze"] = analyze
    step = _Trace(until=("probe.py", "backward"))
    run = tmp / "run"
    step.run(
        app,
        ["train", str(run), "--data", "digits", "--model", "digits-mlp", "--eagc", "--epochs",
         "1", "--reference-epochs", "1"],
    )  # fmt: skip
    if not step.done or not COORDINATE & step.names:
        raise SystemExit("the train flow did not reach Probe.backward through EAGC.coordinate")
    flows["train step"] = step
    report = _Trace()
    report.run(app, ["report", str(run), "--out", str(tmp / "report")])
    flows["report"] = report
    for name, trace in flows.items():
        print(f"{name}: {len(trace.files)} files: {' '.join(sorted(trace.files))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
