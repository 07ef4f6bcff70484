"""The emulated pigpio daemon, driven by the real `pigpio` client (the protocol's reference
implementation) and by gpiozero's PiGPIOFactory, the way the pilot box driver reaches a real Pi."""

from __future__ import annotations

import struct
import threading
import time

import pigpio
import pytest
from gpiozero import MCP3208, InputDevice, OutputDevice
from gpiozero.pins.pigpio import PiGPIOFactory

from rig.core.clock import VirtualClock
from rig.sim.gpio import BenchPinFactory
from rig.sim.pigpio_daemon import PI_UNKNOWN_COMMAND, PigpioDaemon

ADC_COUNTS = {0: 3071, 1: 1024}


@pytest.fixture
def bench():
    clock = VirtualClock(1)
    factory = BenchPinFactory(clock)
    daemon = PigpioDaemon(factory, adc=lambda ch: ADC_COUNTS.get(ch, 0)).start()
    yield clock, factory, daemon
    daemon.stop()
    factory.close()


@pytest.fixture
def pi(bench):
    _clock, _factory, daemon = bench
    client = pigpio.pi("127.0.0.1", daemon.port)
    assert client.connected
    yield client
    client.stop()


def test_modes_writes_and_reads_reach_the_emulated_pins(bench, pi):
    _clock, factory, _daemon = bench
    pi.set_mode(5, pigpio.OUTPUT)
    assert pi.get_mode(5) == pigpio.OUTPUT
    pi.write(5, 1)
    assert factory.pin(5).state is True and pi.read(5) == 1
    pi.write(5, 0)
    assert factory.pin(5).state is False
    pi.set_mode(17, pigpio.INPUT)
    pi.set_pull_up_down(17, pigpio.PUD_UP)
    assert factory.pin(17).pull == "up" and pi.read(17) == 1
    factory.pin(17).drive_low()
    assert pi.read(17) == 0
    assert pi.read_bank_1() & (1 << 17) == 0


def test_pwm_duty_range_and_frequency(pi):
    assert pi.set_PWM_range(12, 1000) == 1000 or pi.get_PWM_range(12) == 1000
    pi.set_PWM_dutycycle(12, 250)
    assert pi.get_PWM_dutycycle(12) == 250
    assert pi.set_PWM_frequency(12, 1000) == 1000
    assert pi.get_PWM_frequency(12) == 1000


def test_tick_is_the_bench_clock_in_microseconds(bench, pi):
    clock, _factory, _daemon = bench
    before = pi.get_current_tick()
    clock.sleep(1.5)
    assert pi.get_current_tick() - before == 1_500_000


def test_identity(pi):
    assert pi.get_hardware_revision() == 0xA02082
    assert pi.get_pigpio_version() > 0


def test_edges_arrive_as_notifications_with_their_tick(bench, pi):
    clock, factory, _daemon = bench
    pi.set_mode(23, pigpio.INPUT)
    seen, arrived = [], threading.Event()

    def on_edge(gpio, level, tick):
        seen.append((gpio, level, tick))
        if len(seen) == 2:
            arrived.set()

    callback = pi.callback(23, pigpio.EITHER_EDGE, on_edge)
    try:
        time.sleep(0.1)  # NB reaches the daemon
        start = pi.get_current_tick()
        factory.pin(23).drive_high()
        clock.sleep(0.25)
        factory.pin(23).drive_low()
        assert arrived.wait(5), seen
        assert [(g, lvl) for g, lvl, _ in seen] == [(23, 1), (23, 0)]
        assert seen[0][2] == start and seen[1][2] - seen[0][2] == 250_000
    finally:
        callback.cancel()


def test_spi_transfer_answers_as_an_mcp3208(pi):
    handle = pi.spi_open(0, 1_000_000, 0)
    try:
        count, data = pi.spi_xfer(handle, bytes([0x06, 0x00, 0x00]))  # start, single-ended, channel 0
        assert count == 3 and ((data[1] & 0x0F) << 8 | data[2]) == ADC_COUNTS[0]
        count, data = pi.spi_xfer(handle, bytes([0x06, 0x40, 0x00]))  # channel 1
        assert ((data[1] & 0x0F) << 8 | data[2]) == ADC_COUNTS[1]
    finally:
        pi.spi_close(handle)


def test_an_unknown_command_gets_pigpios_own_error(bench):
    import socket

    _clock, _factory, daemon = bench
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as sock:
        sock.sendall(struct.pack("<IIII", 250, 1, 2, 0))
        cmd, p1, p2, res = struct.unpack("<IIIi", sock.recv(16))
    assert (cmd, p1, p2, res) == (250, 1, 2, PI_UNKNOWN_COMMAND)
    assert pigpio.error_text(PI_UNKNOWN_COMMAND) == "unknown command"


def test_bad_arguments_get_pigpios_error_codes(pi):
    pigpio.exceptions = False
    try:
        assert pi.set_mode(60, pigpio.OUTPUT) == pigpio.PI_BAD_GPIO
        assert pi.write(5, 2) == pigpio.PI_BAD_LEVEL
        assert pi.set_pull_up_down(5, 9) == pigpio.PI_BAD_PUD
        assert pi.spi_xfer(999, b"\x00")[0] == pigpio.PI_BAD_HANDLE
    finally:
        pigpio.exceptions = True


def test_gpiozero_pigpio_factory_runs_unchanged_against_it(bench):
    clock, factory, daemon = bench
    remote = PiGPIOFactory(host="127.0.0.1", port=daemon.port)
    try:
        relay = OutputDevice(5, pin_factory=remote)
        sense = InputDevice(17, pull_up=None, active_state=True, pin_factory=remote)
        relay.on()
        assert factory.pin(5).state is True
        factory.pin(17).drive_high()
        assert sense.is_active
        adc = MCP3208(channel=0, port=0, device=0, pin_factory=remote)
        assert adc.raw_value == ADC_COUNTS[0]
        for device in (relay, sense, adc):
            device.close()
    finally:
        remote.close()


# ---------------------------------------------------------------------- the pilot box driver's real path
def test_the_pilot_box_driver_drives_the_emulated_circuit_through_the_daemon():
    """The driver with pin_factory = "pigpio" (gpiozero's PiGPIOFactory, the pigpio client) against
    the daemon in front of the emulated pilot circuit: relays reach the plant, the ADC's peak
    detectors read the CP levels over SPI, sense inputs read the contactor."""
    from rig.core.rigfile import load_rigfile
    from rig.data import EMULATED_RIG
    from rig.instruments.pilot import PilotBox
    from rig.sim.gpio import EmulatedPilotCircuit
    from rig.sim.plant import Generator, Plant

    clock = VirtualClock(1)
    plant = Plant(clock, phases=3)
    plant.generator = Generator("steady")  # a powered charger's CP generator: +12 V through 1 kOhm
    factory = BenchPinFactory(clock)
    section = load_rigfile(EMULATED_RIG).section("pilot")
    circuit = EmulatedPilotCircuit(plant, factory, section)
    circuit.start()
    daemon = PigpioDaemon(factory, adc=circuit._adc_counts).start()
    box = PilotBox("pilot", {**section, "pin_factory": "pigpio", "host": "127.0.0.1", "port": daemon.port}, clock)
    try:
        box.open()
        box.safe()
        level_a = box.measure_cp(window_s=0.0).high_v
        box.set_state("B")
        clock.sleep(0.1)
        level_b = box.measure_cp(window_s=0.0).high_v
        box.set_state("C")
        clock.sleep(0.1)
        level_c = box.measure_cp(window_s=0.0).high_v
        assert 11.0 < level_a < 13.0 and 8.0 < level_b < 10.0 and 5.0 < level_c < 7.0, (level_a, level_b, level_c)
        sensed = box.sense()
        assert not any(getattr(sensed, name) for name in ("l1", "l2", "l3")), sensed  # no charger: contactor open
        assert {0, 3, 4, 71, 75}.issubset(set(daemon.commands_seen))  # modes, read, write, SPI open and transfer
    finally:
        box.safe()
        box.close()
        daemon.stop()
        circuit.stop()
        factory.close()


# ---------------------------------------------------------------------- a daemon that stops answering
def test_an_edge_report_never_waits_for_a_command_in_progress(bench, pi):
    """The deadlock seen under CPU load: a command (holding the daemon's command lock) unhooked a
    pin, which needs the plant's lock, while the plant's thread, holding that lock, reported an edge
    and waited for the command lock. A report must go through while a command is in progress."""
    _clock, factory, daemon = bench
    pi.set_mode(23, pigpio.INPUT)
    arrived = threading.Event()
    callback = pi.callback(23, pigpio.EITHER_EDGE, lambda *_: arrived.set())
    try:
        time.sleep(0.1)  # NB reaches the daemon
        with daemon._lock:  # a command in progress on the daemon's thread
            edge = threading.Thread(target=factory.pin(23).drive_high, daemon=True)
            edge.start()
            edge.join(5)
            assert not edge.is_alive(), "the edge report waited for the command lock"
        assert arrived.wait(5)
    finally:
        callback.cancel()


def pilot_box_via(daemon_port: int, timeout_s: float):
    from rig.core.rigfile import load_rigfile
    from rig.data import EMULATED_RIG
    from rig.instruments.pilot import PilotBox

    section = load_rigfile(EMULATED_RIG).section("pilot")
    config = {**section, "pin_factory": "pigpio", "host": "127.0.0.1", "port": daemon_port, "timeout_s": timeout_s}
    return PilotBox("pilot", config, VirtualClock(1))


def test_a_daemon_that_stops_answering_is_a_rig_fault_naming_the_pilot_box(bench, monkeypatch):
    """pigpio's client waits for ever for an answer; the driver gives up after timeout_s, closes the
    link (a late answer would be taken for the next command's) and every later call fails at once."""
    from rig.core.errors import InstrumentError, RigFault

    _clock, _factory, daemon = bench
    box = pilot_box_via(daemon.port, timeout_s=0.5)
    box.open()
    release = threading.Event()
    answer = daemon._command
    monkeypatch.setattr(daemon, "_command", lambda *a: (release.wait(10), answer(*a))[1])  # wedged daemon
    try:
        started = time.monotonic()
        with pytest.raises(InstrumentError, match=r"did not answer a command within 0\.5 s") as err:
            box.set_state("B")
        assert err.value.instrument == "pilot"
        assert time.monotonic() - started < 3.0  # one timeout, then the closed link fails fast
        started = time.monotonic()
        with pytest.raises(RigFault, match="did not answer"):
            box.safe()
        assert time.monotonic() - started < 1.0
    finally:
        release.set()
        box.close()


def test_a_daemon_that_accepts_and_never_answers_fails_the_open_within_its_deadline():
    import socket

    from rig.core.errors import InstrumentError

    with socket.create_server(("127.0.0.1", 0)) as mute:
        box = pilot_box_via(mute.getsockname()[1], timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(InstrumentError, match=r"127\.0\.0\.1:\d+ did not answer within 1 s of connecting"):
            box.open()
        assert time.monotonic() - started < 3.0


# ---------------------------------------------------------------------- a notification stream that stalls
def flip_sense_l1(factory, box) -> None:
    pin = factory.pin(box.config["pins"]["sense_l1"])
    pin.drive_low() if pin.state else pin.drive_high()


def test_an_edge_whose_notification_arrives_is_in_the_confirmed_log(bench):
    """The sense log is confirmed against the pins read live; a notification still in flight when
    the log is asked for is waited for, and the edge is in the answer."""
    _clock, factory, daemon = bench
    box = pilot_box_via(daemon.port, timeout_s=2.0)
    box.open()
    try:
        assert box.confirmed_sense_events() == []  # nothing moved: the log agrees as it is
        flip_sense_l1(factory, box)
        assert [name for _t, name, _v in box.confirmed_sense_events()] == ["sense_l1"]
    finally:
        box.close()


def test_a_lost_edge_notification_is_a_rig_fault_not_an_edge_the_unit_never_made(bench, monkeypatch):
    """CI once saw "contactor open after C->B = nothing observed" reported as the unit's failure
    while the pilot box had stopped reporting. Commands still answer here, the notification stream
    is silent: the pin reads its new level and no edge was logged, which is the rig's fault."""
    from rig.core.errors import InstrumentError

    _clock, factory, daemon = bench
    box = pilot_box_via(daemon.port, timeout_s=2.0)
    box.open()
    try:
        monkeypatch.setattr(daemon, "_report", lambda: None)  # the stream stalls, commands go on
        flip_sense_l1(factory, box)
        started = time.monotonic()
        with pytest.raises(InstrumentError, match=r"sense_l1 reads [01] but the edge .* was never notified") as err:
            box.confirmed_sense_events()
        assert err.value.instrument == "pilot"
        assert time.monotonic() - started < 2.0  # the in-flight allowance, not a long wait
        assert box.sense_events() == []  # the plain log has no idea: that is why it is confirmed
    finally:
        box.close()


def test_an_edge_while_its_pin_is_unhooked_never_waits_for_the_unhooking(bench, pi):
    """The device froze in CI: the daemon dropped its strong reference to a pin's edge callback
    before unhooking it. gpiozero holds callbacks weakly, so an edge in between found the callback
    dead and unhooked the pin itself, waiting for the pin's callback lock, which the unhooking
    thread held while it waited for the plant's lock the edge's thread held. Here the unhooking
    thread waits for an edge instead of the plant: the edge must not need the lock it holds."""
    _clock, factory, _daemon = bench
    pi.set_mode(23, pigpio.INPUT)
    callback = pi.callback(23, pigpio.EITHER_EDGE, lambda *_: None)
    time.sleep(0.1)  # NB reaches the daemon: it watches GPIO 23
    pin = factory.pin(23)
    unhook = pin._disable_event_detect
    edge_stuck: list[bool] = []

    def unhook_with_an_edge_meanwhile():
        edge = threading.Thread(target=pin.drive_low if pin.state else pin.drive_high, daemon=True)
        edge.start()
        edge.join(2)
        edge_stuck.append(edge.is_alive())
        unhook()

    pin._disable_event_detect = unhook_with_an_edge_meanwhile
    callback.cancel()  # the client's NB no longer names GPIO 23: the daemon unhooks it
    deadline = time.monotonic() + 5
    while not edge_stuck and time.monotonic() < deadline:
        time.sleep(0.05)
    assert edge_stuck == [False], "an edge waited for the thread unhooking its pin"
