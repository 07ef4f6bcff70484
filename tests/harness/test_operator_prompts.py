"""Operator prompts: answered by the emulated rig on the emulated bench (unattended), by the person
at the terminal on a real bench; a prompt nobody answers is a rig fault, never a unit failure."""

from __future__ import annotations

import os
import threading

import pytest

from rig.bench.operator import Operator, OperatorTimeout, TerminalAnswerer, emulated_answerer
from rig.core.errors import RigFault
from tests.harness.plugin_runs import run_pytest, write_test

PROBE = """
def test_asks_the_operator(rig):
    rig.operator.confirm("Fit the Type 2 test plug to the socket, then press Continue")
    assert rig.operator.yes_no("Is the enclosure closed?") is True
    assert rig.operator.number("Energy on the unit's display", unit="kWh", emulated=lambda: 12.5) == 12.5
    assert len(rig.operator.asked) == 3
"""


def test_the_emulated_rig_answers_so_the_suite_stays_unattended(tmp_path):
    run = run_pytest([str(write_test(tmp_path, PROBE))], tmp_path)
    assert run.returncode == 0, run.output[-2000:]
    assert run.outcome("test_asks_the_operator") == "passed"


def test_a_prompt_nobody_can_answer_is_a_rig_fault_naming_the_operator(tmp_path):
    """--prompts terminal with no terminal (stdin of a child is not a tty): the run cannot ask anyone."""
    run = run_pytest([str(write_test(tmp_path, PROBE)), "--prompts", "terminal", "--prompt-timeout", "5"], tmp_path)
    assert run.returncode == 1, run.output[-2000:]  # pytest's own code for an error; the verdict says which
    assert run.outcome("test_asks_the_operator") == "error"
    test = run.json("run.json")["tests"][0]
    assert test["rig_fault"] and "operator" in test["rig_fault"], test


def _pipe_answerer(lines: list[bytes], delay_s: float = 0.0):
    read_fd, write_fd = os.pipe()
    shown: list[str] = []

    def feed():
        for line in lines:
            threading.Event().wait(delay_s)
            os.write(write_fd, line)

    threading.Thread(target=feed, daemon=True).start()
    return TerminalAnswerer(shown.append, input_fd=read_fd, require_tty=False), shown, (read_fd, write_fd)


def test_the_terminal_asks_and_reasks_until_the_answer_makes_sense():
    answerer, shown, fds = _pipe_answerer([b"twelve\n", b"12.5\n", b"maybe\n", b"y\n", b"\n"])
    try:
        op = Operator(answerer, timeout_s=5)
        assert op.number("Energy on the display", unit="kWh") == 12.5
        assert op.yes_no("Is the enclosure closed?") is True
        op.confirm("Fit the test plug")
        assert sum("not understood" in s for s in shown) == 2
        assert shown[0].startswith("OPERATOR: Energy on the display [a number in kWh]")
    finally:
        for fd in fds:
            os.close(fd)


def test_no_answer_in_time_is_a_rig_fault():
    answerer, _shown, fds = _pipe_answerer([])
    try:
        with pytest.raises(OperatorTimeout) as caught:
            Operator(answerer, timeout_s=0.3).confirm("Fit the Type 2 test plug")
        assert isinstance(caught.value, RigFault) and caught.value.instrument == "operator"
        assert "Fit the Type 2 test plug" in str(caught.value)
    finally:
        for fd in fds:
            os.close(fd)


def test_the_emulated_rig_needs_to_be_told_a_number():
    with pytest.raises(RigFault, match="emulated="):
        Operator(emulated_answerer, timeout_s=1).number("Energy on the display")
    assert Operator(emulated_answerer, timeout_s=1).yes_no("Closed?", emulated=False) is False
