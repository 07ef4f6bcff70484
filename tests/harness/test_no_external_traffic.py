"""Proof that a test run's packets stay on this machine's loopback.

The spec suite runs in a child process with a Python audit hook (sys.addaudithook, PEP 578) that
logs every address the process binds, connects or sends to (socket.bind, socket.connect,
socket.sendto, socket.sendmsg) and every name it resolves (socket.getaddrinfo, which could send
DNS queries through the machine's resolver), from every thread. Audit hooks cannot be removed
and see every socket the interpreter opens: the rig's services, the emulated link, the central
system, the drivers, asyncio's own. The run passes if every address is in 127.0.0.0/8 or ::1,
or an AF_UNIX path; the documented public addresses (1.1.1.1, 1.0.0.1) and host names only
exist inside the emulated link's map and the capture, never in a socket call.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import textwrap

from tests.harness.plugin_runs import PROJECT, child_env, pytest_cmd

HOOK = textwrap.dedent('''
    import json, os, socket, sys, threading
    _log = open(os.environ["RIG_AUDIT_SOCKETS"], "a", buffering=1)
    _lock = threading.Lock()

    def _hook(event, args):
        if event in ("socket.bind", "socket.connect", "socket.sendto", "socket.sendmsg"):
            sock, address = args[0], args[1] if len(args) > 1 else None
            family = getattr(sock, "family", None)
            entry = [event, int(family) if family is not None else None, repr(address) if family == socket.AF_UNIX
                     else address]
        elif event == "socket.getaddrinfo":
            entry = [event, None, [args[0], args[1]]]
        else:
            return
        with _lock:
            _log.write(json.dumps(entry, default=repr) + "\\n")

    sys.addaudithook(_hook)
''')


def _is_local(event: str, family: int | None, address) -> bool:
    import socket

    if family == socket.AF_UNIX:
        return True
    if event == "socket.getaddrinfo":
        host = address[0]
        if host in (None, "", "localhost"):
            return True
        host = host.decode() if isinstance(host, bytes) else str(host)
    elif isinstance(address, (list, tuple)) and address:
        host = str(address[0])
    else:
        return False
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a name: it would be resolved by the machine's resolver


def _audited_run(tmp_path, args: list[str]) -> tuple[subprocess.CompletedProcess, list]:
    log = tmp_path / "sockets.jsonl"
    env = child_env()
    env["RIG_AUDIT_SOCKETS"] = str(log)
    cmd = pytest_cmd(args, tmp_path / "reports")
    code = HOOK + "\nimport pytest\nsys.exit(pytest.main(" + repr(cmd[3:]) + "))\n"
    proc = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, env=env, capture_output=True, text=True,
                          timeout=900)
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
    return proc, entries


def test_the_audit_hook_sees_an_outside_address(tmp_path):
    """The check itself works: a probe that sends one datagram to 192.0.2.1 (TEST-NET-1) is caught."""
    probe = tmp_path / "test_probe.py"
    probe.write_text("import socket\n\ndef test_send():\n"
                     "    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:\n"
                     "        s.sendto(b'x', ('192.0.2.1', 9))\n")
    proc, entries = _audited_run(tmp_path, [str(probe)])
    outside = [e for e in entries if not _is_local(*e)]
    assert ["socket.sendto", 2, ["192.0.2.1", 9]] in outside, (entries, proc.stdout[-1000:])


def test_a_spec_run_never_leaves_loopback(tmp_path):
    proc, entries = _audited_run(tmp_path, ["rig/spec", "--hazardous"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    kinds = {e[0] for e in entries}
    assert {"socket.bind", "socket.connect", "socket.sendto"} <= kinds, f"the hook saw too little: {kinds}"
    outside = [e for e in entries if not _is_local(*e)]
    assert not outside, f"{len(outside)} socket calls left loopback, e.g. {outside[:10]}"
