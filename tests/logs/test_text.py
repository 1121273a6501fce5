"""Text logs of the SimGCD family, EAGC, LegoGCD and the original GCD code, line by line."""

from __future__ import annotations

import pytest

from entangle.errors import EntangleValueError
from entangle.logs.text import read_text_log, strip_prefix
from tests.logs.log_samples import (
    EAGC_LOG,
    GCD_STDOUT,
    LEGOGCD_FREE_TEXT_NAMES,
    LEGOGCD_STEP,
    LOGGING_LINES,
    SIMGCD_LOG,
    SIMGCD_MESSAGES,
    loguru,
)


def _write(tmp_path, text, name="log.txt"):
    path = tmp_path / name
    path.write_text(text + "\n", encoding="utf-8")
    return path


def test_simgcd_log_epochs_protocols_and_losses(tmp_path):
    log = read_text_log(_write(tmp_path, SIMGCD_LOG))
    e0, e1 = log.epoch_records()
    assert e0["epoch"] == 0 and e1["epoch"] == 1
    assert (e1["acc_all"], e1["acc_old"], e1["acc_new"]) == (0.4002, 0.5120, 0.3440)
    assert e1["acc_protocol"] == "v2"  # 'Using evaluation function v2 to print results'
    assert e1["acc_protocols"]["v2b"] == {"all": 0.3811, "old": 0.4990, "new": 0.3222}
    assert e0["loss_avg"] == 6.8123 and e0["time"].startswith("2024-03-05 14:02:")
    assert [(s["epoch"], s["batch"], s["batches"]) for s in log.steps] == [
        (0, 0, 46),
        (0, 10, 46),
        (1, 0, 46),
    ]
    assert log.steps[1]["loss"] == 6.50012
    assert log.steps[1]["log_losses"] == {
        "cls_loss": 3.9001,
        "cluster_loss": 7.9120,
        "sup_con_loss": 5.2001,
        "contrastive_loss": 5.8870,
    }


def test_every_line_is_counted_and_unknown_ones_are_kept(tmp_path):
    log = read_text_log(_write(tmp_path, SIMGCD_LOG))
    c = log.counts
    assert c["lines"] == len(SIMGCD_MESSAGES)
    assert c["parsed"] + c["info"] + c["unknown"] + c["blank"] == c["lines"]
    assert c["unknown"] == 1 and c["info"] == 5  # model build, 2x testing, 2x model saved
    ((number, text),) = log.unknown_examples
    assert number == 12 and text.endswith("CUDA kernel launch took longer than expected")


def test_eagc_and_legogcd_lines(tmp_path):
    log = read_text_log(_write(tmp_path, EAGC_LOG))
    assert log.counts["unknown"] == 0
    assert log.reference_steps == [
        {"epoch": 0, "batch": 0, "batches": 23, "loss": 4.60512, "log_losses": {"cls_loss": 4.6051}}
    ]
    assert log.reference_epochs == [{"epoch": 0, "loss_avg": 4.21}]
    assert "loss" not in log.steps[0]  # EAGC logs the components only
    assert log.steps[0]["log_losses"]["nll_loss"] == 0.9310
    assert log.best == [{"epoch": 1, "all": 0.4002, "old": 0.5120, "new": 0.3440}]
    e0, e1 = log.epoch_records()
    assert e1["acc_protocol"] == "v2" and "acc_protocols" not in e1  # printed to stdout only


def test_gcd_stdout_with_test_accuracy_and_seen_class_accuracy(tmp_path):
    log = read_text_log(_write(tmp_path, GCD_STDOUT, "slurm-123.out"))
    assert log.counts["unknown"] == 0 and log.counts["blank"] == 1
    (e0,) = log.epoch_records()
    assert e0["acc_protocol"] == "v1" and e0["acc_all"] == 0.3
    assert e0["test_acc"] == {"all": 0.28, "old": 0.33, "new": 0.25}
    assert e0["epoch_stats"] == {"seen_class_acc": 0.25}
    assert log.best == [{"epoch": 0, "all": 0.3, "old": 0.35, "new": 0.275}]


def test_protocol_is_inferred_from_matching_numbers_or_said_unknown(tmp_path):
    messages = [
        "Train Epoch: 0 Avg Loss: 6.8123 ",
        "Epoch 0, Train ACC Unlabelled_v2: All 0.3120 | Old 0.4010 | New 0.2671",
        "Epoch 0, Train ACC Unlabelled_v2b: All 0.2950 | Old 0.3877 | New 0.2480",
        "Train Accuracies: All 0.2950 | Old 0.3877 | New 0.2480",
        "Train Epoch: 1 Avg Loss: 5.0 ",
        "Train Accuracies: All 0.5 | Old 0.5 | New 0.5",
    ]
    e0, e1 = read_text_log(_write(tmp_path, loguru(messages))).epoch_records()
    assert e0["acc_protocol"] == "v2b"  # the one whose logged numbers the line repeats
    assert e1["acc_protocol"] == "unknown" and e1["acc_all"] == 0.5


def test_python_logging_prefixes(tmp_path):
    log = read_text_log(_write(tmp_path, LOGGING_LINES))
    assert log.counts["parsed"] == 3 and log.counts["unknown"] == 0
    (e3,) = log.epoch_records()
    assert e3["epoch"] == 3 and e3["loss_avg"] == 4.0 and e3["acc_protocol"] == "v2"
    assert strip_prefix("plain message") == ("plain message", None)


def test_a_step_line_with_free_text_keeps_its_pairs_and_the_text(tmp_path):
    garbled = "Epoch: [0][0/46]\t loss 7.2\t cls_loss: 4.6 and then something"
    log = read_text_log(_write(tmp_path, loguru([garbled, "Train Epoch: 0 Avg Loss: 6.8 "])))
    (step,) = log.steps
    assert step["loss"] == 7.2 and step["log_losses"] == {"cls_loss": 4.6}
    assert step["log_text"] == "and then something" and log.counts["unknown"] == 0


def test_legogcd_step_lines_with_free_text_keep_every_value(tmp_path):
    """1000 of 1000 such lines were counted unknown before (issue 22)."""
    lines = [LEGOGCD_STEP.format(b=b, v=b % 3) for b in range(0, 1000)]
    log = read_text_log(_write(tmp_path, loguru([*lines, "Train Epoch: 0 Avg Loss: 6.8 "])))
    assert len(log.steps) == 1000 and log.counts["unknown"] == 0
    step = log.steps[7]
    assert step["loss"] == 7.21934 and step["log_losses"] == {
        "cls_loss": 4.6174,
        "cluster_loss": 8.3042,
        "sup_con_loss": 5.719,
        "contrastive_loss": 5.2962,
        "nll_loss": 0.0,
    }
    assert list(step["log_values"]) == LEGOGCD_FREE_TEXT_NAMES
    assert step["log_values"]["Unlabeled pred Old"] == 7 % 3
    assert "log_text" not in step


def test_nan_losses_are_kept_as_nan(tmp_path):
    text = loguru(["Epoch: [0][0/46]\t loss nan\t cls_loss: nan cluster_loss: 8.3 "])
    (step,) = read_text_log(_write(tmp_path, text)).steps
    assert step["loss"] != step["loss"] and step["log_losses"]["cluster_loss"] == 8.3


def test_files_that_are_not_training_logs_are_refused(tmp_path):
    with pytest.raises(EntangleValueError, match="none of its 2 lines"):
        read_text_log(_write(tmp_path, "hello\nworld"))
    binary = tmp_path / "events.bin"
    binary.write_bytes(b"\x00\xff\xfe\x81")
    with pytest.raises(EntangleValueError, match="not a UTF-8 text log"):
        read_text_log(binary)
    with pytest.raises(EntangleValueError, match="does not exist"):
        read_text_log(tmp_path / "missing.txt")


def test_get_branch_lines_are_all_kept(tmp_path):
    from tests.logs.log_samples import GET_MESSAGES

    log = read_text_log(_write(tmp_path, loguru(GET_MESSAGES)))
    (e0,) = log.epoch_records()
    assert e0["branch_acc"]["text"] == {"all": 0.4, "old": 0.5, "new": 0.35}
    assert e0["acc_branch"] == "sum" and e0["acc_all"] == 0.55
    # the three same-named protocol lines are numbered, none overwritten
    assert e0["acc_protocols"]["v2"]["all"] == 0.5
    assert e0["logged_acc"]["Train ACC Unlabelled (2)"]["v2"]["all"] == 0.4
    assert e0["logged_acc"]["Train ACC Unlabelled (3)"]["v2"]["all"] == 0.55
    assert log.counts["unknown"] == 0


def test_any_log_lines_parse_or_are_refused_in_one_line(tmp_path):
    """Hostile text logs (issue 19): prefixes of the known formats followed by anything,
    numbers out of range, control characters: a TextLog or one EntangleValueError line."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.logs.log_samples import LOGURU, SIMGCD_MESSAGES

    pieces = st.sampled_from(
        [*SIMGCD_MESSAGES, "Epoch ", "All ", "| Old ", "nan", "1e999", "-", ":", "\t", " " * 50]
    )
    message = st.lists(pieces | st.text(max_size=12), max_size=5).map("".join)
    prefix = st.sampled_from([LOGURU.format(s=1, line=2), "", "2024-03-05 14:02:01,532 - "])
    line = st.tuples(prefix, message).map("".join)

    @settings(
        max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(lines=st.lists(line, max_size=8))
    def check(lines):
        path = tmp_path / "log.txt"
        path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
        try:
            log = read_text_log(path)
        except EntangleValueError as exc:
            assert "\n" not in str(exc)
        else:
            assert log.counts["unknown"] >= 0

    check()
