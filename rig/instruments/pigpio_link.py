"""A bound on how long the pilot box's pigpio daemon may take to answer one command.

pigpio's Python client reads every answer with a blocking `recv` on a socket without a timeout
(pigpio.py `_pigpio_command`). A daemon that stops answering (a Pi that hangs, a network cable
pulled mid-command, a daemon wedged) therefore stops the harness for ever: the run never ends,
the station never shows RIG FAULT - RETEST, and SIGTERM cannot get it to the safe state either.
Neither pigpio nor gpiozero offers a command timeout, so this small wrapper supplies one (written
here because no library does). Connecting has the same flaw (pigpio connects and waits for its
first answers without a timeout), so the factory is built on a worker thread with a deadline.

After one unanswered command the link is closed, never reused: pigpio matches answers to
commands by order only, so a late answer would be read as the answer to the next command (a
relay read back as set when it is not). Every later command fails at once with a message that
names the daemon, and the pilot box's retries end in an `InstrumentError` within milliseconds
instead of one timeout per relay.
"""

from __future__ import annotations

import logging
import socket
import threading

log = logging.getLogger("rig.instruments")

DEFAULT_COMMAND_TIMEOUT_S = 5.0  # a healthy daemon answers in milliseconds, also over a busy LAN


class PigpioSilent(ConnectionError):
    """The pigpio daemon did not answer a command in time; the link is closed."""


class GuardedCommandSocket:
    """Stands in for pigpio's command socket: the same calls, each answer awaited at most `timeout_s`."""

    def __init__(self, sock: socket.socket, timeout_s: float, where: str):
        self._sock, self.timeout_s, self.where = sock, timeout_s, where
        self._silent: str | None = None
        sock.settimeout(timeout_s)

    @property
    def silent(self) -> bool:
        return self._silent is not None

    def _check(self) -> None:
        if self._silent is not None:
            raise PigpioSilent(self._silent)

    def _went_silent(self) -> None:
        self._silent = (f"pigpio daemon at {self.where} did not answer a command within {self.timeout_s:g} s; "
                        "link closed (check the Pi, its pigpiod and the network)")
        log.error("%s", self._silent)
        try:
            self._sock.close()
        except OSError:
            pass
        raise PigpioSilent(self._silent)

    def send(self, data, *flags) -> int:
        self._check()
        try:
            return self._sock.send(data, *flags)
        except TimeoutError:
            self._went_silent()

    def sendall(self, data, *flags) -> None:
        self._check()
        try:
            self._sock.sendall(data, *flags)
        except TimeoutError:
            self._went_silent()

    def recv(self, size: int, *flags) -> bytes:
        self._check()
        try:
            data = self._sock.recv(size, *flags)
        except TimeoutError:
            self._went_silent()
        if not data:  # the daemon closed the connection: pigpio would fail unpacking b""
            self._silent = f"pigpio daemon at {self.where} closed the connection"
            raise PigpioSilent(self._silent)
        return data

    def __getattr__(self, name):  # close, setsockopt, fileno ...: the real socket's
        return getattr(self._sock, name)


def guard_commands(factory, timeout_s: float, where: str) -> None:
    """Give a gpiozero `PiGPIOFactory`'s command socket a per-answer timeout.

    Only the command socket: the notification socket (edge reports) waits for edges that may
    legitimately not come for hours.
    """
    link = getattr(getattr(factory, "connection", None), "sl", None)
    if link is None or getattr(link, "s", None) is None:
        raise ConnectionError(f"pigpio daemon at {where}: no command socket to guard (pigpio changed?)")
    if not isinstance(link.s, GuardedCommandSocket):
        link.s = GuardedCommandSocket(link.s, timeout_s, where)


def connect(host: str, port: int, timeout_s: float):
    """A gpiozero `PiGPIOFactory` for `host:port`, built within a deadline, its commands guarded.

    Raises `PigpioSilent` when the daemon does not let itself be reached in time: a connection
    that hangs (a host that drops packets) or a daemon that accepts and never answers.
    """
    from gpiozero.pins.pigpio import PiGPIOFactory

    where = f"{host}:{port}"
    built: dict = {}

    def build() -> None:
        try:
            built["factory"] = PiGPIOFactory(host=host, port=port)
        except BaseException as exc:  # handed to the caller's thread below
            built["error"] = exc

    worker = threading.Thread(target=build, name=f"pigpio-connect-{where}", daemon=True)
    worker.start()
    # twice the answer timeout: a TCP connect and pigpio's first three commands
    worker.join(2 * timeout_s)
    if worker.is_alive():
        # the worker stays blocked in pigpio's recv; it is a daemon thread and holds only its socket
        raise PigpioSilent(f"pigpio daemon at {where} did not answer within {2 * timeout_s:g} s of connecting "
                           "(check the Pi, its pigpiod and the network)")
    if "error" in built:
        raise built["error"]
    factory = built["factory"]
    try:
        guard_commands(factory, timeout_s, where)
    except Exception:
        factory.close()
        raise
    return factory


def release_if_silent(factory) -> bool:
    """After a silent daemon: let gpiozero close its devices without talking to the Pi.

    gpiozero's closes (and its `__del__`s) send commands only while the factory has a
    connection, which it judges by the command socket being set. With that cleared they release
    the Python objects quietly instead of failing again at garbage collection ("Exception
    ignored in GPIOBase.__del__" on the operator's terminal). The notification thread is stopped
    too. What the Pi's pins do now is unknown; the run has already ended in a rig fault.
    """
    connection = getattr(factory, "_connection", None)
    link = getattr(connection, "sl", None)
    guarded = getattr(link, "s", None)
    if not isinstance(guarded, GuardedCommandSocket) or not guarded.silent:
        return False
    link.s = None
    notify = getattr(connection, "_notify", None)
    if notify is not None:
        notify.go = False
        try:
            notify.sl.s.shutdown(socket.SHUT_RDWR)  # its blocked recv returns; the thread ends
        except (OSError, AttributeError):
            pass
    return True
