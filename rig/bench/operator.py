"""Operator prompts: a test asks the person at the station to act or to confirm.

    rig.operator.confirm("Fit the Type 2 test plug to the socket, then press Continue")
    if rig.operator.yes_no("Is the enclosure closed?", emulated=True): ...
    kwh = rig.operator.number("Energy on the unit's display", unit="kWh", emulated=lambda: ...)

Who answers is the answerer the rig was given: on the emulated bench the emulated rig answers at
once (`emulated=` says what; a confirmation is simply done), so the suite stays unattended; on a
real bench the terminal asks (the station panel will answer through the same interface). A prompt
nobody answers within the timeout is a rig fault naming the operator: the unit was not judged,
it is never a unit failure (RIG FAULT - RETEST at end of line).
"""

from __future__ import annotations

import logging
import os
import select
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from rig.core.errors import RigFault

log = logging.getLogger(__name__)

CONTINUE, YES_NO, NUMBER = "continue", "yes_no", "number"
YES, NO = ("y", "yes"), ("n", "no")


@dataclass(frozen=True)
class Prompt:
    text: str
    kind: str  # continue | yes_no | number
    unit: str = ""
    emulated: Any = None  # what the emulated rig answers (a value, or a callable giving it)

    def line(self) -> str:
        hint = {CONTINUE: "press Enter to continue", YES_NO: "y/n", NUMBER: f"a number{' in ' + self.unit if self.unit else ''}"}
        return f"OPERATOR: {self.text} [{hint[self.kind]}] "


class OperatorTimeout(RigFault):
    """Nobody answered a prompt in time (or nobody can: no terminal, no panel)."""


class Answerer(Protocol):
    def __call__(self, prompt: Prompt, timeout_s: float) -> str | None: ...


class Operator:
    """What tests call; `answerer` decides who answers (emulated rig, terminal, panel)."""

    def __init__(self, answerer: Answerer, timeout_s: float):
        self.answerer, self.timeout_s = answerer, timeout_s
        self.asked: list[tuple[Prompt, str]] = []  # every prompt and its answer, for the record

    def confirm(self, text: str) -> None:
        self._ask(Prompt(text, CONTINUE))

    def yes_no(self, text: str, emulated: bool = True) -> bool:
        return parse_yes_no(self._ask(Prompt(text, YES_NO, emulated=emulated))) is True

    def number(self, text: str, unit: str = "", emulated: Any = None) -> float:
        return float(self._ask(Prompt(text, NUMBER, unit, emulated)))

    def _ask(self, prompt: Prompt) -> str:
        log.info("operator prompt: %s", prompt.text)
        answer = self.answerer(prompt, self.timeout_s)
        if answer is None:
            raise OperatorTimeout("operator", f"no answer within {self.timeout_s:g} s to: {prompt.text}")
        log.info("operator answered %r to: %s", answer, prompt.text)
        self.asked.append((prompt, answer))
        return answer


def parse_yes_no(text: str) -> bool | None:
    word = text.strip().lower()
    return True if word in YES else False if word in NO else None


def valid(prompt: Prompt, text: str) -> bool:
    if prompt.kind == YES_NO:
        return parse_yes_no(text) is not None
    if prompt.kind == NUMBER:
        try:
            float(text)
        except ValueError:
            return False
    return True


# ------------------------------------------------------------------------------------------------
def emulated_answerer(prompt: Prompt, timeout_s: float) -> str:
    """The emulated rig does what it is asked at once and answers what the test says it would."""
    value = prompt.emulated() if callable(prompt.emulated) else prompt.emulated
    if prompt.kind == YES_NO:
        return "yes" if value is None or value else "no"
    if prompt.kind == NUMBER:
        if value is None:
            raise RigFault("operator", f"the emulated rig cannot answer {prompt.text!r}: the test gave no emulated=")
        return repr(float(value))
    return ""


class TerminalAnswerer:
    """Asks on the terminal and reads a line from `input_fd` (stdin), re-asking on a wrong answer.
    `write` shows the prompt (the plugin suspends pytest's capture around it). With no terminal to
    ask (stdin not a tty: CI, a pipe) nobody can answer: the answer is None at once."""

    def __init__(self, write: Callable[[str], None], input_fd: int | None = None, require_tty: bool = True,
                 now: Callable[[], float] | None = None):
        import time

        self.write, self.input_fd = write, (0 if input_fd is None else input_fd)
        self.require_tty, self.now = require_tty, now or time.monotonic
        self._buffered = b""  # typed ahead: what was read past one answer belongs to the next prompt

    def __call__(self, prompt: Prompt, timeout_s: float) -> str | None:
        if self.require_tty and not os.isatty(self.input_fd):
            log.error("operator prompt with no terminal to answer it: %s", prompt.text)
            return None
        deadline = self.now() + timeout_s
        self.write(prompt.line())
        while True:
            while b"\n" in self._buffered:
                line, self._buffered = self._buffered.split(b"\n", 1)
                text = line.decode("utf-8", "replace").strip()
                if valid(prompt, text):
                    return text
                self.write(f"not understood: {text!r}\n{prompt.line()}")
            left = deadline - self.now()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.input_fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(self.input_fd, 1024)
                if not chunk:
                    return None  # end of input: nobody will answer
                self._buffered += chunk
