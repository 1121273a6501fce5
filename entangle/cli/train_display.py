"""What `entangle train` prints: the step bar, one line per evaluation and the closing summary."""

from __future__ import annotations

import math
import shlex
import time
from pathlib import Path

from rich.markup import escape

from entangle.cli.common import literal


class TrainDisplay:
    """What ``entangle train`` shows while it runs: the step bar and one line per evaluation.

    The bar (stderr) carries steps done, images/s (``images_per_step`` images on all ranks per
    step; it/s when 0), elapsed, ETA and a note: the last loss and, after the first
    evaluation, its All accuracy and, on CUDA, the epoch's peak GPU memory. The loss
    is read from the GPU at most every ``refresh_s`` seconds, and not at all when no bar is
    drawn. Each evaluation prints one stdout line in SimGCD's log.txt wording (``Epoch E,
    Train ACC Unlabelled_v2: All .. | Old .. | New ..``) with the epoch's mean training loss,
    summed on the device and read once per epoch.
    """

    def __init__(
        self, report, stage: str, epochs: int, refresh_s: float = 0.5, images_per_step: int = 0
    ):
        self.report, self.stage, self.epochs, self.refresh_s = report, stage, epochs, refresh_s
        self.images_per_step = images_per_step
        self.shown = report.shown
        self.total_loss = None  # this epoch's loss sum, a device tensor
        self.steps = 0
        self.last_read = -math.inf
        self.note, self.evaluated = "", ""

    def step(self, step: int, total: int, loss) -> None:
        self.total_loss = loss if self.total_loss is None else self.total_loss + loss
        self.steps += 1
        if self.shown:
            now = time.monotonic()
            if now - self.last_read >= self.refresh_s or step == total:
                self.last_read = now
                self.note = f"loss {float(loss):.4f}{self.evaluated}"
            self.report(self.stage, step, total, self.note, images_per_step=self.images_per_step)

    def epoch(self, epoch: int, record: dict) -> None:
        mean = float(self.total_loss) / self.steps if self.steps else math.nan
        self.total_loss, self.steps = None, 0
        self.evaluated = progress_evaluation(record)
        for line in epoch_lines(epoch, self.epochs, mean, record):
            self.report.print(literal(line), highlight=False)


def progress_evaluation(record: dict) -> str:
    """The bar note's part from the last evaluation: its All accuracy and peak GPU memory."""
    note = f" All {_number(record.get('acc_all'), 3)}"
    peak = record.get("peak_gpu_memory_mib")
    if isinstance(peak, int | float) and math.isfinite(peak):
        note += f" {peak / 1024:.1f}GiB"
    return note


def epoch_lines(epoch: int, epochs: int, mean_loss: float, record: dict) -> list[str]:
    """One evaluation in SimGCD's log.txt words: the epoch's mean loss, then All/Old/New.

    ``epoch`` is 0-based, as in SimGCD's log and entangle's epochs.jsonl; ``(e of N)`` counts.
    """
    protocol = record.get("acc_protocol") or "v2"
    accs = " | ".join(
        f"{name} {_number(record.get(f'acc_{name.lower()}'))}" for name in ("All", "Old", "New")
    )
    accuracy = f"Epoch {epoch}, Train ACC Unlabelled_{protocol}: {accs}"
    if record.get("nan_reason"):
        accuracy += f" ({record['nan_reason']})"
    loss = f"Train Epoch: {epoch} Avg Loss: {_number(mean_loss)} (epoch {epoch + 1} of {epochs})"
    return [loss, accuracy]


def _number(value, digits: int = 4) -> str:
    """``value`` to ``digits`` decimals; ``nan`` for a missing or non-finite one (never dropped)."""
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return "nan"
    return f"{value:.{digits}f}"


def summary_lines(summary: dict, out: Path, data: str) -> list[str]:
    """The closing lines: where the run is, its headline numbers, and the report command."""
    shown = shlex.quote(str(out))
    lines = [
        f"[green]Run written:[/] [bold]{escape(str(out))}[/] ({escape(data)})",
        "  last evaluation ({}): All {} | Old {} | New {}".format(
            escape(str(summary.get("acc_protocol") or "v2")),
            *(_number(summary.get(k)) for k in ("acc_all", "acc_old", "acc_new")),
        ),
    ]
    early = summary.get("early_steps", 200)
    gdc = f"  GDC first {early} steps {_number(summary.get('gdc_early'), 3)} (raw"
    if "gdc_early_eagc" in summary:
        gdc += f"; EAGC-corrected {_number(summary['gdc_early_eagc'], 3)}"
    lines.append(gdc + ")")
    lines.append(
        f"  conflict rate {_number(summary.get('conflict_rate'), 2)}, ProbeSet SOC first "
        f"{early} steps {_number(summary.get('soc_early'), 3)}"
    )
    probed = summary.get("steps_probed")
    if probed is not None:
        nan = summary.get("nan_steps") or 0
        bad = f", {nan} with non-finite values" if nan else ""
        lines.append(f"  {probed} probed steps{bad}")
    lines.append(f"  summary in {escape(str(out / 'DONE'))}; see it with:")
    report = shlex.quote(f"reports/{Path(out).resolve().name}")
    lines.append(f"  entangle report {escape(shown)} --out {escape(report)}")
    return lines


class Silent:
    """``stage_progress``'s stand-in on ranks other than 0 (one progress line per run)."""

    def __enter__(self):
        def report(*args, **kwargs) -> None:
            return None

        report.shown = False
        report.print = report  # the epoch lines are rank 0's (it evaluates)
        return report

    def __exit__(self, *exc):
        return False
