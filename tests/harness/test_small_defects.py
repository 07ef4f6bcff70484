"""Small defects found by reading the code, each pinned by a test that failed before its fix."""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import pytest
import serial

from rig.instruments import ocppj
from rig.core.aio import LoopThread
from rig.core.clock import VirtualClock
from rig.instruments.serial_line import MAX_LINE_BYTES, read_available
from rig.core.measure import MeasurementLog, limit_range
from rig.network.dns import DnsMessage, DnsServer, query
from rig.network.pcap import LINKTYPE_ETHERNET, _decode
from rig.sim.ptypair import PtyPair


# ---------------------------------------------------------------------- OCPP date-time is RFC 3339
@pytest.mark.parametrize("value", ["2026-01-05T06:00:00Z", "2026-01-05T06:00:00.123+01:00",
                                   "2026-01-05t06:00:00z", "2026-06-30T23:59:59-05:30"])
def test_rfc3339_date_times_are_valid(value):
    assert ocppj.validate(ocppj.CALL_RESULT, "Heartbeat", {"currentTime": value}) is None


@pytest.mark.parametrize("value", ["20260105T060000Z", "2026-W02-1T06:00:00Z", "2026-005T06:00:00Z",
                                   "2026-01-05T06:00:00", "2026-01-05 06:00:00Z", "2026-13-05T06:00:00Z",
                                   "2026-01-05T06:00Z", "2026-01-05T06:00:00+0100"])
def test_other_iso_8601_forms_are_not_ocpp_date_times(value):
    violation = ocppj.validate(ocppj.CALL_RESULT, "Heartbeat", {"currentTime": value})
    assert violation is not None, value


# ---------------------------------------------------------------------- truncated packets
def test_a_truncated_dns_query_is_malformed_not_a_struct_error():
    whole = query(7, "ocpp.ampnexus.net")
    for cut in (13, len(whole) - 3, len(whole) - 1):
        with pytest.raises(ValueError):
            DnsMessage.decode(whole[:cut])


def test_the_dns_server_drops_a_truncated_query_without_a_service_fault():
    clock = VirtualClock(1)
    server = DnsServer("dns test", {"host": "127.0.0.1", "port": 0, "records": {"ocpp.ampnexus.net": "127.0.0.80"},
                                    "ttl_s": 300}, clock).open()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(query(9, "ocpp.ampnexus.net")[:-2], server.address)
            deadline = time.monotonic() + 5
            while not server.queries() and time.monotonic() < deadline:
                time.sleep(0.01)
        (seen,) = server.queries()
        assert seen.what.startswith("malformed") and not seen.answered
        assert server._loop.faults.since() == []
    finally:
        server.close()


@pytest.mark.parametrize("frame", [b"", b"\x00" * 5, b"\x00" * 13])
def test_a_short_ethernet_frame_in_a_capture_is_a_truncated_packet(frame):
    packet = _decode(1.0, LINKTYPE_ETHERNET, frame)
    assert packet.proto == "truncated"


# ---------------------------------------------------------------------- the loop thread
def test_a_timed_out_run_cancels_its_coroutine():
    loop = LoopThread("test").start()
    acted = []

    async def slow():
        await asyncio.sleep(0.3)
        acted.append(True)

    try:
        with pytest.raises(TimeoutError):
            loop.run(slow(), timeout=0.05)
        time.sleep(0.5)
        assert acted == [], "the coroutine went on acting after its caller gave up"
    finally:
        loop.stop()


def test_an_unawaited_exception_in_the_loop_is_a_service_fault():
    loop = LoopThread("svc").start()

    async def broken():
        raise struct.error("unpack requires a buffer of 4 bytes")

    try:
        loop.loop.call_soon_threadsafe(lambda: loop.loop.create_task(broken()))
        time.sleep(0.1)
        import gc

        gc.collect()  # a task's exception is reported when the task is collected
        deadline = time.monotonic() + 2
        while not loop.faults.since() and time.monotonic() < deadline:
            gc.collect()
            time.sleep(0.02)
        assert loop.faults.since() and "struct.error" in loop.faults.since()[0]
    finally:
        loop.stop()


# ---------------------------------------------------------------------- the serial line reader
def test_a_stream_without_line_ends_does_not_grow_the_buffer_without_bound():
    pair = PtyPair("garbage").start()
    try:
        writer = serial.Serial(pair.device_a, 115200, timeout=0.1)
        reader = serial.Serial(pair.device_b, 115200, timeout=0.1)
        writer.write(b"x" * (MAX_LINE_BYTES + 500))
        writer.flush()
        pending = bytearray()
        with pytest.raises(ValueError, match="without a line end"):
            for _ in range(200):
                read_available(reader, pending)
        assert len(pending) == 0
        writer.close()
        reader.close()
    finally:
        pair.close()


# ---------------------------------------------------------------------- open limits
def test_an_open_upper_limit_prints_as_plus_infinity():
    assert limit_range(5.0, None) == "[5 .. +inf]"
    assert limit_range(None, 0.1) == "[-inf .. 0.1]"
    log = MeasurementLog()
    m = log.check("delay", 7.0, "s", low=5.0, source="spec")
    assert "limit [5 .. +inf] s" in m.describe()
