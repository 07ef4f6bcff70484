"""The emulated service console: the line protocol of `rig.instruments.console` on a pty.

This class owns the serial side (pty, line framing, echo, terminator, prompt and faults);
what a command *means* is the emulated charger's business, through `handler(line) -> str`:

* return the reply body (lines separated by "\\n"); "OK" is appended unless the body already
  ends in an "OK" or "ERR ..." line;
* return None, or raise ValueError (e.g. `CommandRejected`), to refuse: the console answers
  "ERR <message>" (None gives "ERR unknown command <word>");
* any other exception is a bug in the emulation: the console answers "ERR internal error"
  and hands the exception to the virtual clock, whose next settle() reports it as a rig
  fault (never as a charger verdict).

The handler runs in the bench's loop thread while the test thread waits for the reply, so it
may read and change the plant under `plant.lock` / `plant.change()` as usual.

Faults (`fault`, settable any time): None | "silent" (reads and answers nothing) |
"garbage" (every byte it sends has its high bit set; line breaks survive) | "disconnect"
(the pty disappears; there is no coming back).
"""

from __future__ import annotations

from typing import Callable

from rig.aio import LoopThread
from rig.sim.plant import Plant
from rig.sim.pty_link import PtyLink

PROMPT = b"> "
FAULTS = (None, "silent", "garbage", "disconnect")

Handler = Callable[[str], "str | None"]


class CommandRejected(ValueError):
    """Raise from a console handler to answer ERR <message>."""


def _garble(data: bytes) -> bytes:
    return bytes(b if b in b"\r\n" else b | 0x80 for b in data)


class EmulatedConsole:
    def __init__(self, plant: Plant, loop: LoopThread, config: dict, handler: Handler, *, echo: bool = True):
        self.plant, self.loop, self.config = plant, loop, dict(config)
        self.handler = handler
        self.echo = echo
        self.commands: list[str] = []  # every command line received, for the harness's own tests
        self._fault: str | None = None
        self._link: PtyLink | None = None

    # -- life cycle -----------------------------------------------------------------------------
    def start(self) -> dict:
        if self._link is None:
            self._link = PtyLink(self.loop, self._on_line, "console")
            self._link.open()
            self._link.write(PROMPT)
        return {**self.config, "port": self._link.path}

    def stop(self) -> None:
        if self._link is not None:
            self._link.close()

    @property
    def fault(self) -> str | None:
        return self._fault

    @fault.setter
    def fault(self, mode: str | None) -> None:
        if mode not in FAULTS:
            raise ValueError(f"unknown fault {mode!r}; one of {FAULTS}")
        self._fault = mode
        if mode == "disconnect":
            self.stop()

    # -- one line (loop thread) -----------------------------------------------------------------
    def _on_line(self, raw: bytes) -> None:
        if self._fault == "silent":
            return
        text = raw.decode("ascii", "replace").strip()
        out: list[str] = [text] if self.echo and text else []
        if text:
            self.commands.append(text)
            out += self._reply_lines(text)
        data = b"".join(line.encode("ascii", "replace") + b"\r\n" for line in out) + PROMPT
        if self._fault == "garbage":
            data = _garble(data)
        if self._link is not None:
            self._link.write(data)

    def _reply_lines(self, text: str) -> list[str]:
        try:
            reply = self.handler(text)
        except ValueError as exc:
            return [f"ERR {exc}"]
        except Exception as exc:
            clock = self.plant.clock
            clock.failure = clock.failure or exc
            return ["ERR internal error"]
        if reply is None:
            return [f"ERR unknown command {text.split()[0]}"]
        lines = [line.rstrip() for line in reply.splitlines()]
        while lines and not lines[-1]:
            lines.pop()
        if lines and (lines[-1] == "OK" or lines[-1].startswith("ERR")):
            return lines
        return lines + ["OK"]
