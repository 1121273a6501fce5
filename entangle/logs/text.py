"""Read the text training logs of the SimGCD family: loguru / logging ``log.txt`` or stdout.

SimGCD (CVMI-Lab/SimGCD train.py) and the codebases built on it (LegoGCD, ProtoGCD, AFGCD,
Happy, EAGC) log through loguru; the original GCD code and SelEx print to stdout. The lines
read here (after any loguru / logging prefix) are, see docs/logs.md:

- ``Epoch: [E][B/N]\\t loss X\\t cls_loss: .. cluster_loss: .. sup_con_loss: ..
  contrastive_loss: ..`` (one training step; EAGC drops the ``loss X`` part, LegoGCD adds
  ``nll_loss``; every ``name: value`` pair is kept; LegoGCD's free text after them,
  ``Unlabeled condidate 0 Unlabeled pred Old 0 ..``, is read as ``log_values``), and
  ``Reference Epoch: [E][B/N] ...``;
- ``Train Epoch: E Avg Loss: X`` (optionally ``| Seen Class Acc: Y``), ``Reference Epoch: E
  Avg Loss: X`` and SelEx's ``Epoch: E Avg Loss: X | Constrastive: Y``;
- ``Epoch T, NAME_PROTOCOL: All A | Old O | New N`` (one accuracy protocol);
- ``Train Accuracies: All A | Old O | New N`` (and ``Test`` / ``Best Train``; GET's
  ``Train Accuracies(img|text|sum): ..`` per prediction branch);
- ``Using evaluation function v2 to print results`` (which protocol the line above shows);
- ``[Best ACC Updated] Epoch E: All=A, Old=O, New=N``.

Lines that say something without a number (``model saved to ...``) are counted as
informational; every other non-blank line is counted as unknown and kept as an example, never
dropped silently.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from entangle.errors import EntangleValueError

# Every pattern here is written so that a character can be consumed in one way only (no two
# adjacent quantifiers over the same characters, names start at a word boundary): matching is
# linear in the line length. `\d+\.?\d*` was not (a run of D digits splits D ways, each retried),
# and the prefix's `\s*[-|]\s*(?:.*?\s*[-|]\s*)?` took 164 s on a line of 4000 spaces.
_NUM = r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)"

# loguru's default file format, then the usual `logging` formats; the message is group "msg"
_PREFIXES = [
    re.compile(r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) \| *[A-Z]+ *\| \S+ - (?P<msg>.*)$"),
    re.compile(r"^(?:DEBUG|INFO|WARNING|ERROR|CRITICAL):[^:]*:(?P<msg>.*)$"),
]
# `logging`'s "TIME - [name - ]LEVEL - msg": the time and first separator, then the first level
# word whose text before it is empty or ends in a separator (see _logging_prefix)
_LOGGING_TIME = re.compile(r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[,.]\d+)[ \t]*[-|]")
_LOGGING_LEVEL = re.compile(r"(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)[ \t]*[-|:]")

_STEP = re.compile(
    r"^(?P<ref>Reference )?Epoch: \[(?P<epoch>\d+)\]\[(?P<batch>\d+)/(?P<batches>\d+)\]"
    r"(?P<rest>.*)$"
)
_PAIR = re.compile(rf"(?<!\w)(?P<name>[A-Za-z_]\w*):?\s+(?P<value>{_NUM})(?=\s|$)")
# free text after the pairs, LegoGCD train.py: 'Unlabeled condidate 0 Unlabeled pred Old 0 ..'
# (a phrase of at most 6 words, then a number); bounded so a long line stays linear
_PHRASE_PAIR = re.compile(
    rf"(?<!\w)(?P<name>[A-Za-z_]\w*(?: [A-Za-z_][\w]*){{0,5}}):?\s+(?P<value>{_NUM})(?=\s|$)"
)
_EPOCH_AVG = re.compile(
    rf"^(?P<ref>Reference )?(?:Train )?Epoch: (?P<epoch>\d+) Avg Loss: (?P<loss>{_NUM})"
    r"(?P<rest>.*)$"
)
_BAR_PAIR = re.compile(rf"\|\s*(?P<name>[A-Za-z][A-Za-z ]*?):\s*(?P<value>{_NUM})")
_ALL_OLD_NEW = rf"All (?P<all>{_NUM}) \| Old (?P<old>{_NUM}) \| New (?P<new>{_NUM})"
_PROTOCOL_ACC = re.compile(
    rf"^Epoch (?P<epoch>\d+|None), (?P<name>.+)_(?P<protocol>[A-Za-z0-9]+): {_ALL_OLD_NEW}\s*$"
)
_SUMMARY_ACC = re.compile(
    rf"^(?P<which>Train|Test|Best Train) Accuracies(?:\((?P<branch>[A-Za-z]+)\))?: "
    rf"{_ALL_OLD_NEW}\s*$"
)
# GET (enguangW/GET s2_GET.py) logs one line per prediction branch; its "sum" fuses both
BRANCH_SHOWN = "sum"
_BEST = re.compile(
    rf"^\[Best ACC Updated\] Epoch (?P<epoch>\d+): All=(?P<all>{_NUM}), "
    rf"Old=(?P<old>{_NUM}), New=(?P<new>{_NUM})\s*$"
)
_USING = re.compile(r"^Using evaluation function (?P<protocol>\w+) to print results\s*$")
_EPOCH_ONLY = re.compile(r"^Epoch: (?P<epoch>\d+)\s*$")

# messages of these codebases that carry no number entangle reads (paths, sizes, stages)
_INFO = re.compile(
    r"^(?:Testing on |model saved to |full model saved to |Model saved to|"
    r"projection head saved to |Loading |"
    r"Load reference model|model build|num_labeled_classes |num_unlabeled_classes |"
    r"Train dataset size|Unlabelled_train_examples_test size|Labelled dataset size|"
    r"Unlabelled dataset size|Starting reference model training|Reference model training "
    r"completed|Experiment saved to|Best ACC on old Classes|Exp Name:|Metrics with best model|"
    r"Saved backbone|Saved reference backbone|Reports for the|Use estedk|Hierarchy clustering|"
    r"Namespace\(|\['?[\w-]+'?\]$)"
)

SAVE_NAME_UNLABELLED = "Train ACC Unlabelled"
UNKNOWN_EXAMPLES = 5


def _float(text: str) -> float:
    return float(text) if text not in ("nan", "inf") else (math.nan if text == "nan" else math.inf)


def _acc(match: re.Match) -> dict[str, float]:
    return {k: _float(match.group(k)) for k in ("all", "old", "new")}


def _snake(name: str) -> str:
    return re.sub(r"\W+", "_", name.strip().lower()).strip("_")


@dataclass
class TextLog:
    """What one text log held.

    Attributes:
        path: the file read.
        epochs: epoch -> what was logged for it (see :meth:`epoch_records`).
        steps: one dict per logged training step: ``epoch``, ``batch``, ``batches``, ``loss``
            (when logged) and ``log_losses`` (every ``name: value`` pair).
        reference_steps / reference_epochs: the same for EAGC's reference-model phase.
        best: ``[Best ACC Updated]`` lines as ``{"epoch", "all", "old", "new"}``.
        printed_protocol: the protocol ``Train Accuracies`` shows, when the log says so.
        counts: ``lines``, ``parsed``, ``info``, ``blank``, ``unknown``.
        unknown_examples: the first unknown lines as ``(line number, text)``.
    """

    path: str
    epochs: dict[int, dict] = field(default_factory=dict)
    steps: list[dict] = field(default_factory=list)
    reference_steps: list[dict] = field(default_factory=list)
    reference_epochs: list[dict] = field(default_factory=list)
    best: list[dict] = field(default_factory=list)
    printed_protocol: str | None = None
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("lines", "parsed", "info", "blank", "unknown"), 0)
    )
    unknown_examples: list[tuple[int, str]] = field(default_factory=list)

    def epoch_records(self) -> list[dict]:
        """One entangle epoch record per logged epoch (docs/records.md, "Imported logs").

        ``acc_all`` / ``acc_old`` / ``acc_new`` are the ``Train Accuracies`` line (SimGCD's
        accuracy on the unlabeled training samples), else the first protocol logged for
        ``Train ACC Unlabelled``. ``acc_protocol`` is the protocol the log says it printed,
        else the logged protocol whose numbers equal that line, else ``"unknown"``.
        """
        return [
            _epoch_record(e, raw, self.printed_protocol) for e, raw in sorted(self.epochs.items())
        ]


def _epoch_record(epoch: int, raw: dict, printed: str | None) -> dict:
    rec: dict = {"epoch": epoch}
    logged = raw.get("logged", {})
    unlabelled = logged.get(SAVE_NAME_UNLABELLED, {})
    train = raw.get("train_acc")
    branches = raw.get("branch_acc", {})
    if train is None and BRANCH_SHOWN in branches:
        train = branches[BRANCH_SHOWN]
        rec["acc_branch"] = BRANCH_SHOWN
    if train is not None:
        rec.update({f"acc_{k}": v for k, v in train.items()})
        same = [p for p, acc in unlabelled.items() if _equal_4dp(acc, train)]
        rec["acc_protocol"] = printed or (same[0] if len(same) == 1 else "unknown")
    elif unlabelled:
        first = next(iter(unlabelled))
        rec.update({f"acc_{k}": v for k, v in unlabelled[first].items()})
        rec["acc_protocol"] = first
    if unlabelled:
        rec["acc_protocols"] = unlabelled
    others = {name: accs for name, accs in logged.items() if name != SAVE_NAME_UNLABELLED}
    if others:
        rec["logged_acc"] = others
    for key in ("test_acc", "branch_acc", "test_branch_acc", "loss_avg", "epoch_stats", "time"):
        if key in raw:
            rec[key] = raw[key]
    return rec


def _equal_4dp(a: dict, b: dict) -> bool:
    """Equal as the logs print them (4 decimals)."""
    return all(f"{a[k]:.4f}" == f"{b[k]:.4f}" for k in ("all", "old", "new"))


def strip_prefix(line: str) -> tuple[str, str | None]:
    """``(message, time or None)`` of one log line without its loguru / logging prefix."""
    for pattern in _PREFIXES:
        m = pattern.match(line)
        if m:
            return m.group("msg"), m.groupdict().get("time")
    return _logging_prefix(line)


def _logging_prefix(line: str) -> tuple[str, str | None]:
    """``TIME - [anything - ]LEVEL - msg`` in one left-to-right pass (no nested quantifiers)."""
    m = _LOGGING_TIME.match(line)
    if not m:
        return line, None
    for level in _LOGGING_LEVEL.finditer(line, m.end()):
        before = line[m.end() : level.start()].rstrip()
        if not before or before[-1] in "-|":
            return line[level.end() :].lstrip(), m.group("time")
    return line, None


def _pairs(rest: str) -> tuple[dict[str, float], dict[str, float], str]:
    """``(name: value pairs, phrase value pairs, text left over)`` of a step line's tail.

    One-word names (``cls_loss: 4.6``, ``loss 7.2``) are the logged losses; a phrase of
    several words before a number (``Unlabeled pred Old 0``) is a logged count or value; what
    is neither is kept as text.
    """
    losses: dict[str, float] = {}
    values: dict[str, float] = {}
    for m in _PHRASE_PAIR.finditer(rest):
        name = m.group("name")
        (values if " " in name else losses)[name] = _float(m.group("value"))
    left = " ".join(_PHRASE_PAIR.sub(" ", rest).split())
    return losses, values, left


class _Parser:
    def __init__(self, log: TextLog):
        self.log = log
        self.epoch: int | None = None  # the epoch the lines are about, once one was named

    def line(self, msg: str, time: str | None) -> str:
        """Read one message; returns its kind: ``parsed``, ``info`` or ``unknown``."""
        msg = msg.strip()
        for handler in (
            self._step,
            self._epoch_avg,
            self._protocol_acc,
            self._summary_acc,
            self._best,
            self._using,
            self._epoch_only,
        ):
            if handler(msg, time):
                return "parsed"
        return "info" if _INFO.match(msg) else "unknown"

    def _raw(self, epoch: int) -> dict:
        self.epoch = epoch
        return self.log.epochs.setdefault(epoch, {})

    def _step(self, msg, time) -> bool:
        m = _STEP.match(msg)
        if not m:
            return False
        values, phrases, left = _pairs(m.group("rest"))
        if not values and not phrases:
            return False
        epoch, batch, batches = (int(m.group(k)) for k in ("epoch", "batch", "batches"))
        rec = {"epoch": epoch, "batch": batch, "batches": batches}
        loss = values.pop("loss", values.pop("Loss", None))
        if loss is not None:
            rec["loss"] = loss
        rec["log_losses"] = values
        if phrases:
            rec["log_values"] = phrases
        if left:
            rec["log_text"] = left
        if m.group("ref"):
            self.log.reference_steps.append(rec)
        else:
            self.epoch = epoch
            self.log.steps.append(rec)
        return True

    def _epoch_avg(self, msg, time) -> bool:
        m = _EPOCH_AVG.match(msg)
        if not m:
            return False
        extra = {
            _snake(p.group("name")): _float(p.group("value")) for p in _BAR_PAIR.finditer(m["rest"])
        }
        if _BAR_PAIR.sub("", m.group("rest")).strip():
            return False
        epoch, loss = int(m.group("epoch")), _float(m.group("loss"))
        if m.group("ref"):
            self.log.reference_epochs.append({"epoch": epoch, "loss_avg": loss} | extra)
            return True
        raw = self._raw(epoch)
        raw["loss_avg"] = loss
        if extra:
            raw["epoch_stats"] = extra
        return True

    def _protocol_acc(self, msg, time) -> bool:
        m = _PROTOCOL_ACC.match(msg)
        if not m:
            return False
        if m.group("epoch") == "None":
            if self.epoch is None:
                return False
            epoch = self.epoch
        else:
            epoch = int(m.group("epoch"))
        per_name = self._raw(epoch).setdefault("logged", {})
        name, k = m.group("name"), 2
        # a codebase logging one save name several times per epoch (GET: once per branch)
        # keeps every line, numbered in order, never overwritten
        while m.group("protocol") in per_name.get(name, {}):
            name, k = f"{m.group('name')} ({k})", k + 1
        per_name.setdefault(name, {})[m.group("protocol")] = _acc(m)
        return True

    def _summary_acc(self, msg, time) -> bool:
        m = _SUMMARY_ACC.match(msg)
        if not m or (m.group("which") != "Best Train" and self.epoch is None):
            return False
        if m.group("which") == "Best Train":
            self.log.best.append({"epoch": self.epoch} | _acc(m))
            return True
        raw = self._raw(self.epoch)
        if m.group("branch"):
            key = "branch_acc" if m.group("which") == "Train" else "test_branch_acc"
            raw.setdefault(key, {})[m.group("branch")] = _acc(m)
        else:
            raw["train_acc" if m.group("which") == "Train" else "test_acc"] = _acc(m)
        if time is not None:
            raw["time"] = time
        return True

    def _best(self, msg, time) -> bool:
        m = _BEST.match(msg)
        if not m:
            return False
        self.log.best.append({"epoch": int(m.group("epoch"))} | _acc(m))
        return True

    def _using(self, msg, time) -> bool:
        m = _USING.match(msg)
        if m:
            self.log.printed_protocol = m.group("protocol")
        return bool(m)

    def _epoch_only(self, msg, time) -> bool:
        m = _EPOCH_ONLY.match(msg)
        if m:
            self._raw(int(m.group("epoch")))
        return bool(m)


def read_text_log(path) -> TextLog:
    """Parse one SimGCD-family text log (``log.txt`` or a captured stdout file).

    Args:
        path: the file.

    Returns:
        a :class:`TextLog`; ``counts["unknown"]`` lines were not understood (the first few are
        in ``unknown_examples``).

    Raises:
        EntangleValueError: the file is missing, not text, or holds no line entangle reads.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except FileNotFoundError:
        raise EntangleValueError(f"log file {path} does not exist") from None
    except UnicodeDecodeError:
        import importlib.util  # only to word the hint: is the TensorBoard reader installed?

        tb = importlib.util.find_spec("tensorboard") is not None
        hint = (
            "pass TensorBoard event files by their events.out.tfevents.* name"
            if tb
            else "for TensorBoard event files install the [tb] extra (pip install "
            "'entangle-gcd[tb]') and pass the events.out.tfevents.* file"
        )
        raise EntangleValueError(f"{path} is not a UTF-8 text log; {hint}") from None
    log = TextLog(str(path))
    parser = _Parser(log)
    for number, line in enumerate(text.splitlines(), start=1):
        log.counts["lines"] += 1
        if not line.strip():
            log.counts["blank"] += 1
            continue
        msg, time = strip_prefix(line)
        kind = parser.line(msg, time)
        log.counts[kind] += 1
        if kind == "unknown" and len(log.unknown_examples) < UNKNOWN_EXAMPLES:
            log.unknown_examples.append((number, line[:200]))
    if log.counts["parsed"] == 0:
        raise EntangleValueError(
            f"{path}: none of its {log.counts['lines']} lines is a SimGCD-family training log "
            "line (e.g. 'Train Accuracies: All .. | Old .. | New ..'); see docs/logs.md for the "
            "formats entangle reads"
        )
    return log
