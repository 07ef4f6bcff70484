"""The service-console driver against the emulated console on a pseudo-terminal."""

from __future__ import annotations

import time

import pytest

from rig.core.aio import LoopThread
from rig.core.clock import VirtualClock
from rig.core.errors import InstrumentError, RigFault
from rig.instruments.console import Console, ConsoleCommandError, parse_info
from rig.sim.console_sim import CommandRejected, EmulatedConsole
from rig.sim.plant import LedShown, Plant

INFO = "model=PlugStream 22\nserial=SIM-0042\nfirmware=3.1.4\nphases=3\nconnector=socket"


class DummyCharger:
    """Stands in for the emulated charger's console handler."""

    def __init__(self, plant: Plant):
        self.plant = plant
        self.info = INFO

    def __call__(self, line: str) -> str | None:
        words = line.split()
        cmd = words[0]
        if cmd == "info":
            return self.info
        if cmd == "echo":
            return " ".join(words[1:])
        if cmd == "lines":
            return "\n".join(f"line {i}" for i in range(int(words[1])))
        if cmd == "lock":
            with self.plant.change("led"):
                self.plant.led = LedShown("orange", "solid", self.plant.clock.now())
            return ""
        if cmd == "refuse":
            raise CommandRejected("not while charging")
        if cmd == "own-err":
            return "partial\nERR busy"
        if cmd == "crash":
            raise RuntimeError("emulator bug")
        if cmd == "legacy":
            raise ValueError(f"unknown command {cmd!r}")  # how the emulated charger refuses
        return None


class Bench:
    def __init__(self, echo: bool = True):
        self.clock = VirtualClock(1)
        self.plant = Plant(self.clock)
        self.loop = LoopThread("console-test").start()
        self.charger = DummyCharger(self.plant)
        self.console = EmulatedConsole(
            self.plant, self.loop, {"port": "auto", "baudrate": 115200}, self.charger, echo=echo
        )
        self.config = {**self.console.start(), "timeout_s": 0.2}

    def driver(self, **overrides) -> Console:
        return Console("console", {**self.config, **overrides}, self.clock)

    def stop(self) -> None:
        self.console.stop()
        self.loop.stop()


@pytest.fixture(params=[True, False], ids=["echo", "no-echo"])
def bench(request):
    b = Bench(echo=request.param)
    yield b
    b.stop()


@pytest.fixture
def console(bench):
    with bench.driver() as drv:
        yield drv


def test_info_is_parsed(console):
    info = console.info()
    assert info == {
        "model": "PlugStream 22", "serial": "SIM-0042", "firmware": "3.1.4", "phases": 3, "connector": "socket"
    }


def test_command_returns_the_reply_body(console):
    assert console.command("echo hello  world") == "hello world"
    assert console.command("lines 5").splitlines() == [f"line {i}" for i in range(5)]
    assert console.command("lines 0") == ""


def test_many_commands_stay_in_step(console):
    for i in range(50):
        assert console.command(f"echo {i}") == str(i)


def test_unknown_command_is_a_clear_error(console):
    with pytest.raises(ConsoleCommandError) as err:
        console.command("frobnicate now")
    assert err.value.instrument == "console"
    assert err.value.command == "frobnicate now"
    assert "unknown command frobnicate" in str(err.value)
    assert not isinstance(err.value, InstrumentError)  # the console worked; the unit said no


@pytest.mark.parametrize(
    "line,reason",
    [("refuse", "not while charging"), ("legacy", "unknown command 'legacy'"), ("own-err", "busy")],
)
def test_refusals_surface_their_reason(console, line, reason):
    reply = console.query(line)
    assert not reply.ok and reply.error == reason
    with pytest.raises(ConsoleCommandError, match=reason):
        console.command(line)


def test_handler_may_change_the_plant(bench, console):
    heard = []
    bench.plant.subscribe(heard.append)
    console.command("lock")
    assert bench.plant.led.colour == "orange" and heard == ["led"]


def test_emulator_bug_is_a_rig_fault_not_a_verdict(bench, console):
    with pytest.raises(ConsoleCommandError, match="internal error"):
        console.command("crash")
    with pytest.raises(RigFault, match="emulator bug"):
        bench.clock.settle()


def test_malformed_info_is_an_instrument_error(bench, console):
    bench.charger.info = "model=PS7\nthis is not a key value line"
    with pytest.raises(InstrumentError, match="not key=value"):
        console.info()
    bench.charger.info = "model=PS7\nfirmware=1"
    with pytest.raises(InstrumentError, match="lacks serial, phases"):
        console.info()


def test_caller_mistake_is_not_an_instrument_error(console):
    with pytest.raises(ValueError):
        console.command("two\nlines")


@pytest.mark.parametrize("fault", ["silent", "garbage", "disconnect"])
def test_console_fault_is_an_instrument_error(bench, console, fault):
    bench.console.fault = fault
    start = time.monotonic()
    with pytest.raises(InstrumentError) as err:
        console.info()
    assert err.value.instrument == "console"
    with pytest.raises(InstrumentError):
        console.command("echo x")
    assert time.monotonic() - start < 4.0  # bounded: timeout x attempts, never a hang


@pytest.mark.parametrize("fault", ["silent", "garbage"])
def test_driver_recovers_when_the_fault_clears(bench, console, fault):
    bench.console.fault = fault
    with pytest.raises(InstrumentError):
        console.command("echo x")
    bench.console.fault = None
    assert console.command("echo back") == "back"


def test_missing_port_is_an_instrument_error():
    drv = Console("console", {"port": "/dev/does-not-exist"}, VirtualClock(0))
    with pytest.raises(InstrumentError) as err:
        drv.open()
    assert err.value.instrument == "console"
    drv.close()
    drv.close()  # idempotent


def test_parse_info_converts_phases():
    assert parse_info(["model=x", "serial=y", "firmware=z", "phases= 1 "])["phases"] == 1


def test_a_port_that_now_reaches_another_unit_is_an_instrument_error(bench, console):
    assert console.info()["serial"] == "SIM-0042"
    bench.charger.info = INFO.replace("SIM-0042", "SIM-0999")  # the adapter re-enumerated onto another unit
    console._disconnect()  # the link drops; the next command reconnects
    with pytest.raises(InstrumentError) as err:
        console.command("echo x")
    assert "SIM-0999" in str(err.value) and "SIM-0042" in str(err.value)
    bench.charger.info = INFO
    assert console.command("echo back") == "back"  # the right unit again: the driver carries on
