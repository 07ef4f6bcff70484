"""A line-based SCPI instrument served on loopback TCP, the base of the emulated load, source and injector.

Real LAN instruments speak SCPI over a raw socket (port 5025 by convention): one message per
line, message units separated by ";", a query answered with one line (answers of a compound
message joined by ";"), a command answered with nothing. Errors are never answered inline:
they go to the error queue and are read with `SYST:ERR?`. The drivers in `rig/instruments/`
rely on exactly that, so the emulation keeps to it:

* IEEE 488.2 mandatory common commands: `*IDN?`, `*RST` (subclass hook), `*CLS` (clears the
  error queue and the event status register), `*OPC?` answers "1" once everything before it has
  been applied (always, here: commands are applied in order as they are parsed), `*OPC` sets the
  Operation Complete bit, `*WAI`, `*TST?` ("0": self-test passed), `*ESE`/`*ESE?`, `*ESR?` (read
  and clear), `*SRE`/`*SRE?`, `*STB?`. The status model is IEEE 488.2's: an error sets its ESR
  bit (command -1xx: CME bit 5, execution -2xx: EXE bit 4, device -3xx: DDE bit 3, query -4xx:
  QYE bit 2); the status byte has EAV (bit 2, the error queue is not empty), ESB (bit 5, an
  enabled ESR bit is set) and MSS (bit 6, an enabled STB bit is set).
* `SYST:ERR?` pops the oldest error (`-113,"Undefined header"`), or `0,"No error"`;
  `SYST:ERR:COUN?` says how many are queued.
* A header nobody handles queues -113 and sends no answer (so a query of it times out, exactly
  as on a real instrument; drivers never query what they have not checked).
* Every message unit is a full header from the root (no SCPI path memory between units).

Headers are declared in SCPI notation: "MEASure:CURRent#?" accepts MEAS:CURR?, MEASURE:CURRENT2?
in any case; "#" is an optional numeric suffix passed to the handler; "[...]" is an optional part.

`fault` (set from the test thread) makes the instrument misbehave for the harness's own tests:
"silent" ignores everything, "garbage" executes but corrupts every answer, "disconnect" drops
the connection as soon as it is used (and every new one at once).
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from typing import Callable

from rig.core.aio import LoopThread
from rig.sim.plant import Plant

Handler = Callable[[tuple[int | None, ...], list[str]], str | None]

#: a corrupted answer: not ASCII, so a VISA read fails to decode it, and no newline inside
GARBAGE = b"\xa7\x00\xfe#\x15?\x9c\xff"
ERROR_QUEUE_DEPTH = 16
# IEEE 488.2 status bits: the event status register and the status byte
ESR_OPC, ESR_QYE, ESR_DDE, ESR_EXE, ESR_CME = 0x01, 0x04, 0x08, 0x10, 0x20
STB_EAV, STB_ESB, STB_MSS = 0x04, 0x20, 0x40


def _esr_bit(code: int) -> int:
    """The ESR bit an error sets, by its SCPI class (-1xx command, -2xx execution, -3xx device,
    -4xx query; positive codes are device-specific)."""
    if -199 <= code <= -100:
        return ESR_CME
    if -299 <= code <= -200:
        return ESR_EXE
    if -499 <= code <= -400:
        return ESR_QYE
    return ESR_DDE


class ScpiError(Exception):
    """A standard SCPI error (negative code) or a device-specific one (positive)."""

    def __init__(self, code: int, message: str):
        super().__init__(f'{code},"{message}"')
        self.code = code
        self.message = message


#: IEEE 488.2 7.4.1.2 <white space>: the characters 0-9 and 11-32 (everything up to space but newline)
WHITESPACE = "".join(chr(c) for c in range(0, 33) if c != 10)
HEADER_SEPARATOR = re.compile(f"[{re.escape(WHITESPACE)}]+")


def split_outside_quotes(text: str, separator: str) -> list[str]:
    """Split at `separator`, but not inside IEEE 488.2 string data ('...' or "...", a doubled
    quote standing for one). Hand-written: no library parses the instrument side of a program
    message, and a string parameter holding ';' or ',' must stay one parameter."""
    parts, current, quote, i = [], [], None, 0
    while i < len(text):
        ch = text[i]
        if quote:
            current.append(ch)
            if ch == quote:
                if i + 1 < len(text) and text[i + 1] == quote:  # a doubled quote is data
                    current.append(text[i + 1])
                    i += 1
                else:
                    quote = None
        elif ch in "'\"":
            quote = ch
            current.append(ch)
        elif ch == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def header_pattern(spec: str) -> re.Pattern[str]:
    """Compile an SCPI header spec ("[SOURce:]CURRent#[:LEVel]?") into a regex.

    Long form = the whole mnemonic, short form = its capital letters; both case-insensitive.
    """
    out = []
    for token in re.split(r"(\[|\]|:|#|\?)", spec):
        if token == "[":
            out.append("(?:")
        elif token == "]":
            out.append(")?")
        elif token == ":":
            out.append(":")
        elif token == "#":
            out.append(r"(\d+)?")
        elif token == "?":
            out.append(r"\?")
        elif token.startswith("*"):  # IEEE 488.2 common command: one fixed form
            out.append(re.escape(token))
        elif token:
            short = "".join(c for c in token if c.isupper() or c.isdigit())
            out.append(f"(?:{re.escape(token.upper())}|{re.escape(short)})")
    return re.compile("^" + "".join(out) + "$", re.IGNORECASE)


# -- parameter parsing shared by the instruments ------------------------------------------------
def expect_args(args: list[str], count: int) -> list[str]:
    if len(args) < count:
        raise ScpiError(-109, "Missing parameter")
    if len(args) > count:
        raise ScpiError(-108, "Parameter not allowed")
    return args


def number(arg: str) -> float:
    try:
        value = float(arg)
    except ValueError:
        raise ScpiError(-104, "Data type error") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ScpiError(-104, "Data type error")
    return value


def boolean(arg: str) -> bool:
    word = arg.strip().upper()
    if word in ("ON", "1"):
        return True
    if word in ("OFF", "0"):
        return False
    raise ScpiError(-224, "Illegal parameter value")


def suffix_index(suffix: int | None, count: int) -> int:
    """Header suffix (1-based, absent = 1) to a 0-based index, checked against `count`."""
    n = 1 if suffix is None else suffix
    if not 1 <= n <= count:
        raise ScpiError(-114, "Header suffix out of range")
    return n - 1


class ScpiServer:
    """Base of an emulated SCPI instrument. Subclasses fill `commands()` and `reset()`."""

    identity = "PlugStreamRig,EmuScpi,SIM0000,1.0"

    def __init__(self, plant: Plant, loop: LoopThread, config: dict):
        self.plant = plant
        self.loop = loop
        self.config = dict(config)
        self.fault: str | None = None
        self.port: int | None = None
        # where it listens: loopback and a free port on the emulated bench; `rig device serve`
        # sets the device's address and the port its device file names
        self.listen_host, self.listen_port = "127.0.0.1", 0
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._errors: deque[ScpiError] = deque()
        self._esr = self._ese = self._sre = 0  # IEEE 488.2 event status, its enable, service request enable
        self._table = [(header_pattern(spec), fn) for spec, fn in self._all_commands().items()]

    # -- what subclasses provide ------------------------------------------------------------
    def commands(self) -> dict[str, Handler]:
        """Header spec -> handler(suffixes, args) returning the answer (queries) or None."""
        return {}

    def reset(self) -> None:
        """*RST: put the instrument in its documented power-on state."""

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> dict:
        if self._server is None:
            self.port = self.loop.run(self._serve())
        return {**self.config, "resource": f"TCPIP0::{self.listen_host}::{self.port}::SOCKET"}

    def stop(self) -> None:
        if self._server is not None:
            self.loop.run(self._shutdown())
            self._server = None

    async def _serve(self) -> int:
        self._server = await asyncio.start_server(self._client, self.listen_host, self.listen_port)
        return self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    # -- the connection ----------------------------------------------------------------------
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while self.fault != "disconnect":
                line = await reader.readline()
                if not line or self.fault == "disconnect":
                    break
                if self.fault == "silent":
                    continue
                answer = self.execute(line.decode("ascii", errors="replace"))
                if answer is not None:
                    writer.write(GARBAGE + b"\n" if self.fault == "garbage" else answer.encode() + b"\n")
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the driver went away; nothing to answer
        finally:
            self._writers.discard(writer)
            writer.close()

    # -- parsing and dispatch ----------------------------------------------------------------
    def execute(self, message: str) -> str | None:
        """Run one program message; return the answer line (None if nothing was queried)."""
        answers = []
        for unit in split_outside_quotes(message.strip(), ";"):
            unit = unit.strip(WHITESPACE)
            if not unit:
                continue
            try:
                answer = self._dispatch(unit)
            except ScpiError as err:
                self._queue(err)
                continue
            except Exception as exc:  # an emulation bug: make it loud, never a silent wrong answer
                self._queue(ScpiError(-300, f"Device-specific error; emulation bug {exc!r}"))
                if getattr(self.plant.clock, "failure", None) is None:
                    self.plant.clock.failure = exc
                continue
            if answer is not None:
                answers.append(answer)
        return ";".join(answers) if answers else None

    def _dispatch(self, unit: str) -> str | None:
        match = HEADER_SEPARATOR.search(unit)  # IEEE 488.2 7.4.3: any white space, a tab too
        header, params = (unit[:match.start()], unit[match.end():]) if match else (unit, "")
        header = header.lstrip(":")
        args = [a.strip(WHITESPACE) for a in split_outside_quotes(params, ",")] if params.strip(WHITESPACE) else []
        for pattern, fn in self._table:
            match = pattern.match(header)
            if match:
                suffixes = tuple(int(s) if s is not None else None for s in match.groups())
                return fn(suffixes, args)
        raise ScpiError(-113, "Undefined header")

    def _queue(self, err: ScpiError) -> None:
        self._esr |= _esr_bit(err.code)
        if len(self._errors) >= ERROR_QUEUE_DEPTH:  # SCPI: the newest entry becomes -350
            self._errors[-1] = ScpiError(-350, "Queue overflow")
            return
        self._errors.append(err)

    # -- IEEE 488.2 common commands and SYSTem:ERRor ---------------------------------------------
    def _all_commands(self) -> dict[str, Handler]:
        common: dict[str, Handler] = {
            "*IDN?": lambda s, a: self.identity,
            "*RST": self._rst,
            "*CLS": self._cls,
            "*OPC?": lambda s, a: "1",
            "*OPC": self._opc,
            "*WAI": lambda s, a: expect_args(a, 0),
            "*TST?": lambda s, a: "0",
            "*ESE": lambda s, a: self._set_register("_ese", a),
            "*ESE?": lambda s, a: str(self._ese),
            "*ESR?": self._read_esr,
            "*SRE": lambda s, a: self._set_register("_sre", a),
            "*SRE?": lambda s, a: str(self._sre),
            "*STB?": lambda s, a: str(self._status_byte()),
            "SYSTem:ERRor[:NEXT]?": self._next_error,
            "SYSTem:ERRor:COUNt?": lambda s, a: str(len(self._errors)),
        }
        return {**common, **self.commands()}

    def _rst(self, suffixes, args) -> None:
        expect_args(args, 0)
        self.reset()

    def _cls(self, suffixes, args) -> None:
        expect_args(args, 0)
        self._errors.clear()
        self._esr = 0

    # -- the IEEE 488.2 status model -----------------------------------------------------------
    def _opc(self, suffixes, args) -> None:
        expect_args(args, 0)
        self._esr |= ESR_OPC  # every operation before it is complete: commands apply as parsed

    def _read_esr(self, suffixes, args) -> str:
        value, self._esr = self._esr, 0
        return str(value)

    def _set_register(self, name: str, args: list[str]) -> None:
        expect_args(args, 1)
        try:
            value = int(float(args[0]))
        except ValueError:
            raise ScpiError(-104, "Data type error") from None
        if not 0 <= value <= 255:
            raise ScpiError(-222, "Data out of range")
        setattr(self, name, value & (0xBF if name == "_sre" else 0xFF))  # SRE bit 6 is not settable

    def _status_byte(self) -> int:
        stb = (STB_EAV if self._errors else 0) | (STB_ESB if self._esr & self._ese else 0)
        return stb | (STB_MSS if stb & self._sre else 0)

    def _next_error(self, suffixes, args) -> str:
        if not self._errors:
            return '0,"No error"'
        err = self._errors.popleft()
        return f'{err.code},"{err.message}"'
