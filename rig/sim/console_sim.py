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
(the pty disappears; there is no coming back). They, and the pty's life cycle, come from
`rig.sim.pty_link.PtyInstrument`.
"""

from __future__ import annotations

from typing import Callable

from rig.core.aio import LoopThread
from rig.sim.plant import Plant
from rig.sim.pty_link import FAULTS, PtyInstrument  # noqa: F401  (FAULTS re-exported: it was defined here)

PROMPT = b"> "

Handler = Callable[[str], "str | None"]


class CommandRejected(ValueError):
    """Raise from a console handler to answer ERR <message>."""


class EmulatedConsole(PtyInstrument):
    link_name = "console"

    def __init__(self, plant: Plant, loop: LoopThread, config: dict, handler: Handler, *, echo: bool = True):
        super().__init__(plant, loop, config)
        self.handler = handler
        self.echo = echo
        self.commands: list[str] = []  # every command line received, for the harness's own tests

    def _on_open(self) -> None:
        self._link.write(PROMPT)  # the first prompt, ready for a command

    # -- one line (loop thread) -----------------------------------------------------------------
    def _on_text(self, text: str) -> None:
        out: list[str] = [text] if self.echo and text else []
        if text:
            self.commands.append(text)
            out += self._reply_lines(text)
        data = b"".join(line.encode("ascii", "replace") + b"\r\n" for line in out) + PROMPT
        self._send_bytes(data)

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
