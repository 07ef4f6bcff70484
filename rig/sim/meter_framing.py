"""How the emulated meter hears the wire: as strictly as an Eastron meter, not as kindly as pymodbus.

pymodbus's server, left to itself, differs from a real meter on faults, and a driver tested against
it could come to rely on the difference:

* a request for another unit id gets exception 04 and a logged traceback (its simulator falls back
  to a device that does not exist); an RS-485 slave stays silent;
* a function code Modbus does not define is dropped without a reply; the meter answers
  exception 01 (ILLEGAL FUNCTION);
* after a damaged frame the RTU framer keeps searching the same bytes and the next good request
  is lost as well; a meter resynchronises on the inter-frame gap and loses only the damaged one.

Hand-written because these are pymodbus framer subclasses: the framing is pymodbus's own, only
what a frame means is decided here. Each read from the line is one frame (a request arrives as
one write and the client waits for the answer): that is the inter-frame gap as the pty sees it.
"""

from __future__ import annotations

from pymodbus.framer import FramerRTU, FramerSocket

#: public function codes of the Modbus application protocol (v1.1b3 section 5.1); others are undefined
DEFINED_FUNCTIONS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 15, 16, 17, 20, 21, 22, 23, 24, 43})
#: a request the meter refuses with ILLEGAL FUNCTION, standing in for an undefined one
STAND_IN = bytes([0x03, 0x00, 0x00, 0x00, 0x01])  # read holding registers 0, count 1
ILLEGAL_FUNCTION = 0x01


class _Strict:
    """What the meter makes of a whole frame. `meter` is the EmulatedMeter (its unit id, and where
    an undefined function code is remembered so the reply can name it)."""

    meter = None  # set on the per-meter subclass by `framers_for`

    def _judge(self, unit: int, pdu: bytes) -> bytes | None:
        """The PDU to serve, or None to stay silent."""
        if unit != self.meter.unit:
            return None
        if pdu and pdu[0] not in DEFINED_FUNCTIONS:
            self.meter.undefined_function = pdu[0]
            return STAND_IN
        return pdu


class StrictRtuFramer(_Strict, FramerRTU):
    def decode(self, data: bytes) -> tuple[int, int, int, bytes]:
        if len(data) < self.MIN_SIZE:
            return 0, 0, 0, self.EMPTY
        whole_crc = FramerRTU.compute_CRC(data[:-2]) == int.from_bytes(data[-2:], "big")
        if whole_crc:  # one complete frame, as the gap delimits it
            pdu = self._judge(data[0], data[1:-2])
            return len(data), data[0], 0, pdu if pdu is not None else self.EMPTY
        used, unit, tid, pdu = super().decode(data)
        if used == 0 and unit == 0 and not pdu and self.decoder.lookupPduClass(data) is None:
            return len(data), 0, 0, self.EMPTY  # not a request the meter knows how to frame: the gap ends it
        if used and not pdu:
            return len(data), 0, 0, self.EMPTY  # a damaged frame: dropped whole, the next one is heard
        return used, unit, tid, pdu


class StrictSocketFramer(_Strict, FramerSocket):
    def decode(self, data: bytes) -> tuple[int, int, int, bytes]:
        used, unit, tid, pdu = super().decode(data)
        if not used:
            return used, unit, tid, pdu
        judged = self._judge(unit, pdu)
        return used, unit, tid, judged if judged is not None else self.EMPTY


def framers_for(meter) -> tuple[type, type]:
    """(RTU framer, TCP framer) classes bound to one emulated meter."""
    return (type("MeterRtuFramer", (StrictRtuFramer,), {"meter": meter}),
            type("MeterSocketFramer", (StrictSocketFramer,), {"meter": meter}))


def illegal_function_reply(frame: bytes, function: int, rtu: bool) -> bytes:
    """The stand-in's exception reply, rewritten to name the function code that was sent."""
    if rtu:
        reply = bytes([frame[0], 0x80 | function, ILLEGAL_FUNCTION])
        return reply + FramerRTU.compute_CRC(reply).to_bytes(2, "big")
    return frame[:4] + (3).to_bytes(2, "big") + bytes([frame[6], 0x80 | function, ILLEGAL_FUNCTION])
