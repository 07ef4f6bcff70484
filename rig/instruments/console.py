"""The charger's service console: a command line on a serial port (115200 8N1).

Line protocol (ASCII):

    host -> charger   <command> CR LF
    charger -> host   [echo of the command line] CR LF      (a terminal echoes; optional)
                      zero or more reply lines, each CR LF
                      a terminator line: "OK" | "ERR <reason>"
                      the prompt "> " (no line end), ready for the next command

An empty line gets just a prompt. Replies are read up to the terminator; the prompt after it
is consumed if it arrives promptly, and a prompt left at the start of a later line is
stripped, so a slow prompt cannot shift one command's answer onto the next.

`info` answers key=value lines; the rig relies on model, serial, firmware and phases.

Who is to blame: no terminator within the timeout, undecodable bytes or a dropped port
mean the rig could not talk to the unit; they are retried (after flushing, with a reconnect
for a dropped port) and then raised as `InstrumentError(name, ...)`. An "ERR" is the charger
answering clearly; `command()` raises it as `ConsoleCommandError`, which is not retried
(the command reached the unit; sending it again could act twice) and names the command and
the reason. `query()` returns it instead, for tests that expect a refusal.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import serial

from rig.core.errors import RigFault
from rig.instruments.serial_line import SerialLineDriver, pop_line, read_available
from rig.instruments.serial_line import SERIAL_TRANSIENT  # noqa: F401  (re-exported: it was defined here)

PROMPT = "> "
OK = "OK"
ERR = "ERR"
INFO_KEYS = ("model", "serial", "firmware", "phases")
_PROMPT_WAIT_S = 0.2


class ConsoleCommandError(RigFault):
    """The charger answered ERR to a command."""

    def __init__(self, instrument: str, command: str, reason: str):
        super().__init__(instrument, f"command {command!r} rejected by the charger: ERR {reason}".rstrip())
        self.command = command
        self.reason = reason


@dataclass(frozen=True)
class ConsoleReply:
    command: str
    ok: bool
    lines: tuple[str, ...]
    error: str | None = None  # the reason after ERR

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class ConsoleLike(Protocol):
    def command(self, line: str, timeout_s: float | None = None) -> str: ...

    def query(self, line: str, timeout_s: float | None = None) -> ConsoleReply: ...

    def info(self) -> dict: ...


def parse_info(lines: tuple[str, ...] | list[str]) -> dict:
    """key=value lines -> dict; phases becomes an int. Raises ValueError on a malformed answer."""
    info: dict = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"info line is not key=value: {line!r}")
        info[key.strip()] = value.strip()
    missing = [k for k in INFO_KEYS if k not in info]
    if missing:
        raise ValueError(f"info answer lacks {', '.join(missing)}")
    info["phases"] = int(info["phases"])
    return info


def _decode(raw: bytes) -> str:
    """One received line as text; garbled bytes (line noise, wrong baud rate) raise ValueError."""
    try:
        text = raw.rstrip(b"\r").decode("ascii")
    except UnicodeDecodeError:
        raise ValueError(f"garbled bytes from the console: {raw[:32]!r}") from None
    if any(ord(c) < 32 and c != "\t" for c in text):
        raise ValueError(f"control characters in console line {text!r}")
    while text.startswith(PROMPT):
        text = text[len(PROMPT) :]
    return text.strip()


class Console(SerialLineDriver):
    """Driver. Config keys: port, baudrate (115200); optional timeout_s (2.0), attempts (3).

    Constructed as `Console(name, config, clock)`; the port's life cycle (open/close, context
    manager, reconnects) comes from `SerialLineDriver`.
    """

    DEFAULT_TIMEOUT_S = 2.0
    unit_serial: str | None = None  # the serial `info` reported first: the unit this port reaches

    # -- commands -------------------------------------------------------------------------------
    def query(self, line: str, timeout_s: float | None = None) -> ConsoleReply:
        """Send `line`; return the reply whether the charger said OK or ERR."""
        _check_command(line)
        timeout = self.timeout_s if timeout_s is None else timeout_s
        return self._retried(f"console command {line!r}", lambda: self._exchange(line, timeout))

    def command(self, line: str, timeout_s: float | None = None) -> str:
        """Send `line`; return the reply text. ERR raises `ConsoleCommandError`."""
        reply = self.query(line, timeout_s)
        if not reply.ok:
            raise ConsoleCommandError(self.name, line, reply.error or "")
        return reply.text

    def info(self) -> dict:
        """The unit's identity from `info`: model, serial, firmware, phases (int) and any extra keys."""

        def attempt() -> dict:
            reply = self._exchange("info", self.timeout_s)
            if not reply.ok:
                raise ConsoleCommandError(self.name, "info", reply.error or "")
            return parse_info(reply.lines)

        info = self._retried("reading info", attempt)
        self.unit_serial = self.unit_serial or info["serial"]
        return info

    # -- the link -------------------------------------------------------------------------------
    def _reconnect(self) -> None:
        """Reopen the port, then make sure it still reaches the same unit: a re-enumerated USB
        adapter (or a freed pseudo-terminal reused by another bench) must never have its answers
        read as this unit's."""
        super()._reconnect()
        if self.unit_serial is None:
            return
        reply = self._exchange("info", self.timeout_s)
        serial_now = parse_info(reply.lines)["serial"] if reply.ok else None
        if serial_now != self.unit_serial:
            self._disconnect()
            self._lost = ConnectionError(f"{self.port} now reaches unit {serial_now!r}, not {self.unit_serial!r}")
            raise self._lost

    # -- one exchange ---------------------------------------------------------------------------
    def _exchange(self, line: str, timeout_s: float) -> ConsoleReply:
        port = self._require_port()
        port.reset_input_buffer()  # whatever a failed earlier exchange left behind
        port.write(line.encode("ascii") + b"\r\n")
        deadline = time.monotonic() + timeout_s  # real time: this waits for the unit's console
        pending = bytearray()
        body: list[str] = []
        first = True
        while True:
            raw = pop_line(pending)
            if raw is None:
                if time.monotonic() > deadline:
                    got = f"; got {len(body)} lines without OK/ERR" if body else ""
                    raise TimeoutError(f"no answer to {line!r} within {timeout_s:g} s{got}")
                read_available(port, pending)
                continue
            text = _decode(raw)
            if first and text == line.strip():
                first = False
                continue  # the terminal's echo
            first = False
            if text == OK or text.startswith(ERR):
                self._consume_prompt(port, pending)
                error = None if text == OK else text[len(ERR) :].strip()
                return ConsoleReply(line, text == OK, tuple(body), error)
            if text:
                body.append(text)

    def _consume_prompt(self, port: serial.Serial, pending: bytearray) -> None:
        deadline = time.monotonic() + _PROMPT_WAIT_S
        while PROMPT.encode() not in pending and time.monotonic() < deadline:
            read_available(port, pending)


def _check_command(line: str) -> None:
    """A caller's mistake is not an instrument fault: refuse it before any retry."""
    if any(c in line for c in "\r\n") or not line.isascii():
        raise ValueError(f"console command must be one ASCII line: {line!r}")
