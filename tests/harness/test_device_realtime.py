"""The harness in real-bench mode against `rig device serve`: another process, wall time, every
instrument reached over the wire (pigpio, Modbus RTU on a pty, SCPI on TCP, ptys), the unit
connecting to the harness's central system on its own.

The runs here are real time (about 1.5 minutes each at most): marked `realtime`, so
`pytest -m "not realtime"` leaves them out and `pytest -m realtime` runs only them. They take a
machine-wide lock, so two real-time runs never compete for the two cores of a CI machine (xdist's
`--dist loadgroup` did not keep them on one worker here).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from rig.core.rigfile import load_rigfile
from rig.station.eol import EXIT_FAIL, EXIT_PASS, EXIT_RETEST
from tests.harness.device_process import DeviceProcess, free_port
from tests.harness.test_eol import has_banner
from tests.harness.plugin_runs import PROJECT, Run, child_env, pytest_cmd

pytestmark = pytest.mark.realtime


@pytest.fixture(autouse=True)
def one_realtime_run_at_a_time():
    import fcntl
    import tempfile
    from pathlib import Path

    with open(Path(tempfile.gettempdir()) / "plugstream-rig-realtime.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield

SERIAL = "SIM-0001"
# every instrument bounded: pilot 5 s (twice to connect), SCPI and serial lines a few seconds with
# retries, the central system its own waits; then the safe state tried on each. Measured: see the note.
HUNG_BENCH_END_MAX_S = 240


def eol_args(device: DeviceProcess, *more: str) -> list[str]:
    # the device is emulated hardware: the emulated rig fits the test plug (no one at a terminal here)
    return ["rig/spec", "--rig", str(device.rig_file), "--eol", "--serial", SERIAL, "--hazardous",
            "-p", "no:randomly", "--prompts", "emulated", *more]


def run_harness(args: list[str], tmp, timeout_s: float = 400) -> Run:
    reports = tmp / "reports"
    try:
        proc = subprocess.run(pytest_cmd(args, reports), cwd=PROJECT, env=child_env(), capture_output=True,
                              text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        # a hung run is a finding: keep what it printed (the last test it reached) in the report
        said = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        pytest.fail(f"the harness ran past {timeout_s:g} s; its last output:\n{said[-4000:]}", pytrace=False)
    return Run(proc.returncode, proc.stdout + proc.stderr, reports)


@pytest.fixture
def device(tmp_path):
    dev = DeviceProcess(tmp_path).start()
    yield dev
    dev.stop()


def test_end_of_line_passes_a_good_unit_in_real_time(device, tmp_path):
    assert load_rigfile(device.rig_file).bench.kind == "real"
    run = run_harness(eol_args(device), tmp_path)
    assert run.returncode == EXIT_PASS, run.output[-3000:] + device.tail()
    assert has_banner(run.output, "PASS")
    tests = run.json("run.json")["tests"]
    assert len(tests) >= 9 and all(t["outcome"] == "passed" for t in tests), [(t["nodeid"], t["outcome"]) for t in tests]
    assert run.json("run.json")["rig"]["bench"] == "real"
    # the ground truth saw what the tests did: the contactor closed and opened, the 6 mA injection
    truth = device.truth()
    closes = [e for e in truth if e["event"] == "contactor" and e["closed"]]
    injections = [e for e in truth if e["event"] == "injection" and e["on"]]
    assert closes and injections, {e["event"] for e in truth}
    assert any(e["event"] == "ocpp" and '"BootNotification"' in e["frame"] for e in truth)
    assert device.stop() == 0, device.output[-2000:]
    assert "device: stopping" in device.output


def test_a_contactor_too_slow_only_in_real_time_fails_its_requirement(tmp_path):
    """slow-open-c-to-b opens the contactor 250 ms after C->B (CP-04 allows 100 ms)."""
    dev = DeviceProcess(tmp_path, "--defect", "slow-open-c-to-b").start()
    try:
        run = run_harness(eol_args(dev, "--req", "CP-04"), tmp_path)
    finally:
        stopped = dev.stop()
    assert run.returncode == EXIT_FAIL, run.output[-3000:] + dev.tail()
    assert stopped == 0, dev.tail()
    assert "FAILED REQUIREMENTS: CP-04" in run.output
    failed = [t for t in run.json("run.json")["tests"] if t["outcome"] == "failed"]
    assert failed and all("CP-04" in t["requirements"] for t in failed)


def test_ocpp_conformance_cases_in_real_time_against_the_device(tmp_path):
    """A few OCPP conformance cases (configuration, DeAuthorized, unclaimed profiles, ClearCache) over
    real sockets in real time, the unit in another process; and the known-bad unit that charges on
    after an Invalid idTag fails exactly OCPP-12 there too."""
    ids = "OCPP-03,OCPP-04,OCPP-12,OCPP-23,OCPP-24"
    args = ["rig/spec", "-p", "no:randomly", "--prompts", "emulated", "--req"]
    for defect, expected in ((None, set()), ("invalid-id-charges-on", {"OCPP-12"})):
        where = tmp_path / (defect or "good")
        where.mkdir()
        dev = DeviceProcess(where, *(("--defect", defect) if defect else ())).start()
        try:
            run = run_harness([*args, ids, "--rig", str(dev.rig_file)], where)
        finally:
            stopped = dev.stop()
        assert stopped == 0, dev.tail()  # a device that hung on its way out hung during the run
        tests = run.json("run.json")["tests"]
        asked = set(ids.split(","))
        # every asked requirement covered; a test may also serve another (OCPP-12's late answer: OCPP-20)
        assert {r for t in tests for r in t["requirements"]} >= asked, run.output[-2000:]
        failed = {r for t in tests if t["outcome"] == "failed" for r in t["requirements"]} & asked
        assert failed == expected, (defect, [(t["nodeid"], t["outcome"]) for t in tests], run.output[-2000:])
        odd = [(t["nodeid"], t["outcome"], t.get("rig_fault") or t.get("harness_error") or t.get("message"))
               for t in tests if t["outcome"] not in ("passed", "failed")]
        assert not odd, (defect, odd, run.output[-4000:], dev.tail())  # which verdict, why, and the run's last words
        assert run.json("run.json")["rig"]["bench"] == "real"


def start_eol_until_the_vehicle_is_driven(tmp_path) -> tuple[DeviceProcess, subprocess.Popen, object]:
    """A device and an end-of-line run against it, returned once the first test has put the
    vehicle in state B or C through the pilot box: a bench fault from then on hits a test mid-way."""
    dev = DeviceProcess(tmp_path).start()
    reports = tmp_path / "reports"
    harness = subprocess.Popen(pytest_cmd(eol_args(dev), reports), cwd=PROJECT, env=child_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = dev.wait_for_truth(lambda e: e["event"] == "vehicle" and e["state"] in ("B", "C"), timeout_s=120)
    if seen is None:
        harness.kill()
        dev.stop(signal.SIGKILL)
        pytest.fail("the harness never drove the vehicle", pytrace=False)
    return dev, harness, reports


def test_a_device_killed_mid_test_is_a_rig_fault_naming_the_instrument(tmp_path):
    dev, harness, reports = start_eol_until_the_vehicle_is_driven(tmp_path)
    try:
        dev.stop(signal.SIGKILL)
        out, _ = harness.communicate(timeout=300)
    finally:
        if harness.poll() is None:
            harness.kill()
    assert harness.returncode == EXIT_RETEST, out[-3000:]
    assert has_banner(out, "RIG FAULT") and has_banner(out, "RETEST"), out[-3000:]
    assert "FAILED REQUIREMENTS" not in out
    tests = Run(harness.returncode, out, reports).json("run.json")["tests"]
    assert not [t for t in tests if t["outcome"] == "failed"], "a dead bench was blamed on the unit"
    assert re.search(r"RIG FAULT on: .*\b(pilot|meter|load|source|injector|led_sensor|console)\b", out), out[-3000:]


def test_a_bench_that_hangs_mid_test_ends_in_a_rig_fault_not_a_hung_run(tmp_path):
    """Every instrument stops answering at once (the device process stopped with SIGSTOP: sockets
    and ptys stay open, nothing answers), as when a bench's Pi and adapters hang. pigpio's client
    alone would wait for ever; the run must end, in a rig fault, within the instruments' bounds."""
    dev, harness, reports = start_eol_until_the_vehicle_is_driven(tmp_path)
    try:
        dev.proc.send_signal(signal.SIGSTOP)
        hung_at = time.monotonic()
        try:
            out, _ = harness.communicate(timeout=HUNG_BENCH_END_MAX_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the harness was still running {HUNG_BENCH_END_MAX_S} s after the bench hung", pytrace=False)
        took = time.monotonic() - hung_at
    finally:
        if harness.poll() is None:
            harness.kill()
        dev.proc.send_signal(signal.SIGCONT)
        dev.stop(signal.SIGKILL)
    assert harness.returncode == EXIT_RETEST, out[-3000:]
    assert has_banner(out, "RIG FAULT") and "FAILED REQUIREMENTS" not in out, out[-3000:]
    tests = Run(harness.returncode, out, reports).json("run.json")["tests"]
    assert not [t for t in tests if t["outcome"] == "failed"], "a hung bench was blamed on the unit"
    logging.getLogger(__name__).info("run ended %.0f s after the bench hung", took)  # pytest's captured log


# ---------------------------------------------------------------------- bad input (no real-time waits)
@pytest.mark.parametrize("body, key", [
    ('[device]\ncentral = "127.0.0.1:9000"\nsped = 2.0\n', "device.sped"),
    ('[device]\ncentral = "127.0.0.1"\n', "device.central"),
    ('[device]\ncentral = "127.0.0.1:9000"\nspeed = "fast"\n', "device.speed"),
    ('[device]\ncentral = "127.0.0.1:9000"\ndefect = "no-such-defect"\n', "device.defect"),
    ('[device]\ncentral = "127.0.0.1:9000"\n[device.ports]\nload = 70000\n', "device.ports.load"),
    ('[devise]\ncentral = "127.0.0.1:9000"\n', "devise"),
    ('[device\n', "not valid TOML"),
])
def test_a_device_file_with_a_mistake_is_one_line_naming_the_key(tmp_path, body, key):
    path = tmp_path / "device.toml"
    path.write_text(body)
    proc = subprocess.run(DeviceProcess(tmp_path).command()[:5] + ["--device-file", str(path)], cwd=PROJECT,
                          env=child_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and str(path) in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_port_already_in_use_is_named_and_the_device_exits_non_zero(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(DeviceProcess(tmp_path, "--port", f"load={port}").command(), cwd=PROJECT,
                              env=child_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "device.ports.load" in line and str(port) in line and "in use" in line, proc.stderr


def test_a_rig_file_whose_device_is_not_running(tmp_path):
    """`rig check` names every unreachable instrument within seconds; pytest ends in a rig fault.
    The serial lines are named by links that exist only while the device runs (as /dev/serial/by-id
    names an adapter): a pty number is taken by the next process that opens one."""
    from pathlib import Path

    dev = DeviceProcess(tmp_path).start()
    rig = load_rigfile(dev.rig_file)
    lines = [Path(rig.meter.port), Path(rig.led_sensor.port), Path(rig.console.port)]
    assert all(p.is_symlink() and str(p.resolve()).startswith("/dev/pts/") for p in lines), lines
    dev.stop()
    assert not any(p.exists() or p.is_symlink() for p in lines), lines
    started = time.monotonic()
    check = subprocess.run([sys.executable, "-m", "rig.cli", "check", str(dev.rig_file)], cwd=PROJECT, env=child_env(), capture_output=True,
                           text=True, timeout=60)
    took = time.monotonic() - started
    assert check.returncode == 1 and took < 15, (took, check.stderr)
    for key in ("pilot.host", "meter.port", "load.resource", "source.resource", "injector.resource",
                "led_sensor.port", "console.port"):
        assert key in check.stderr, (key, check.stderr)
    run = run_harness(eol_args(dev), tmp_path, timeout_s=120)
    assert run.returncode == EXIT_RETEST, run.output[-3000:]
    assert has_banner(run.output, "RIG FAULT") and "FAILED REQUIREMENTS" not in run.output
    assert "RIG FAULT on: pilot" in run.output and "failed to connect" in run.output


def test_the_device_leaves_no_port_behind(tmp_path):
    ports = {name: free_port() for name in ("pigpio", "load", "source", "injector")}
    args = [a for name, port in ports.items() for a in ("--port", f"{name}={port}")]
    first = DeviceProcess(tmp_path, *args).start()
    assert first.stop(signal.SIGINT) == 0, first.output
    second = DeviceProcess(tmp_path, *args).start()  # the same ports again: nothing was left listening
    # SIGUSR1 prints every thread's stack (the pacer's among them) and the device serves on
    second.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while "paced_clock.py" not in second.output and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "paced_clock.py" in second.output and second.proc.poll() is None, second.output
    assert second.stop() == 0, second.output


# ---------------------------------------------------------------------- a separate network
def test_the_unit_on_the_rigs_network_behind_a_veth_in_its_own_namespace(tmp_path):
    """The device in a network namespace of its own: the harness reaches the instruments and the
    unit reaches the rig's DHCP, DNS, NTP, firmware server and central system (TLS, the rig CA it was
    provisioned with) only over a veth pair, at the standard ports, as a real unit's Ethernet port.
    Where the machine refuses namespaces, the same on loopback addresses of its own."""
    from rig.network.pcap import read_pcap
    from tests.harness import netns

    if os.geteuid() != 0:
        pytest.skip("the rig's services need the standard ports 53, 67, 123, 443: root (CI runs as root)")
    why_not = netns.available()
    space = netns.Namespace().create() if why_not is None else None
    prefix = space.prefix if space else "127.78.0"
    extra = ["--host", space.instruments] if space else []
    dev = DeviceProcess(tmp_path, "--network", prefix, "--rig-ca", str(tmp_path / "rig-ca"), *extra,
                        wrap=space.command if space else None)
    try:
        dev.start()
        rig = load_rigfile(dev.rig_file)
        assert rig.network is not None and rig.network.unit_address == f"{prefix}.10" and rig.central.tls
        if space:  # every instrument on the far side of the veth
            assert rig.pilot.host == space.instruments and space.instruments in rig.load.resource
        spec = "rig/spec/"
        run = run_harness([spec + "test_network.py::test_connects_with_its_own_credentials_over_tls",
                           spec + "test_network.py::test_dns_servers_asked_in_the_documented_order[1-silent]",
                           spec + "test_control_pilot.py::test_contactor_opens_within_100ms_of_c_to_b",
                           "--rig", str(dev.rig_file), "-p", "no:randomly"], tmp_path)
    finally:
        stopped = dev.stop()
        if space:
            space.delete()
    assert run.returncode == 0, run.output[-3000:] + dev.tail()
    assert stopped == 0, dev.tail()
    assert [t["outcome"] for t in run.json("run.json")["tests"]] == ["passed"] * 3
    sent = [p for p in read_pcap(rig.network.capture) if p.src in (rig.network.unit_address, "0.0.0.0")]
    assert {(p.proto, p.dport) for p in sent} >= {("udp", 67), ("udp", 53), ("udp", 123), ("tcp", 443)}, \
        "the unit did not use the rig's DHCP, DNS, NTP and TLS services"
    assert (tmp_path / "rig-ca" / "ca.crt").exists()
