"""The rig's test certificate authority and firmware signing key.

A unit on the bench trusts the rig's test CA instead of the production one (a real unit is put
into its factory test mode with the rig's CA certificate installed, see docs/network.md), so the
rig can present:

* a good server certificate for each documented host name (the central system, the firmware server);
* a certificate for the same name from an authority the unit does not trust (SEC-01);
* an expired certificate from the trusted authority (SEC-01);

and sign firmware images with the key whose public half the unit checks images against (FW-02).

EC P-256 keys (fast to make, so every bench makes its own) and Ed25519 for firmware signatures.
With `ca_dir` (rig file `network.ca_dir`) the trusted CA and the firmware key last: made there on
first use and read back on every later run, as a real unit can only be provisioned once with them
(a CA new every run could never be trusted by a unit on a real bench).
Validity periods are anchored on the rig's time (TimeService), wide enough that a test moving
the served calendar by months keeps the good certificates valid.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
from pathlib import Path
from typing import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rig.core.tempdirs import PrivateDir

GOOD, UNTRUSTED, EXPIRED = "good", "untrusted", "expired"
KINDS = (GOOD, UNTRUSTED, EXPIRED)
VALID_BEFORE = dt.timedelta(days=400)  # good certificates are valid from a year and a month before the rig's time
VALID_AFTER = dt.timedelta(days=5 * 365)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "PlugStream test rig"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class _Authority:
    """One CA: its key and self-signed certificate, and what it issues."""

    def __init__(self, common_name: str, now: dt.datetime, key=None, cert: x509.Certificate | None = None):
        self.key = key or ec.generate_private_key(ec.SECP256R1())
        self.name = cert.subject if cert is not None else _name(common_name)
        self.cert = cert or (
            x509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - VALID_BEFORE - dt.timedelta(days=1)).not_valid_after(now + VALID_AFTER * 2)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def issue(self, host: str, not_before: dt.datetime, not_after: dt.datetime):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder().subject_name(_name(host)).issuer_name(self.name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return cert, key


class TestAuthority:
    """The rig's CA, an untrusted one, and the firmware signing key; files in a private temp dir."""

    __test__ = False  # not a pytest test class

    def __init__(self, time_source: Callable[[], dt.datetime], ca_dir: str | Path | None = None):
        now = time_source()
        self._now = now
        self.untrusted = _Authority("Untrusted test authority", now)
        if ca_dir:
            self.trusted, self.firmware_key = _lasting(Path(ca_dir), now)
        else:
            self.trusted = _Authority("PlugStream test rig CA", now)
            self.firmware_key = ed25519.Ed25519PrivateKey.generate()
        self._dir = PrivateDir("ca-")  # private, and found by the next run if this one is killed
        self._issued: dict[tuple[str, str], tuple[Path, Path]] = {}

    # -- what the unit is given at manufacture (emulated) / in test mode (real) -------------------
    @property
    def ca_pem(self) -> bytes:
        return _pem(self.trusted.cert)

    @property
    def firmware_public_pem(self) -> bytes:
        return self.firmware_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo)

    def write_ca(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_bytes(self.ca_pem)
        return path

    # -- server side -----------------------------------------------------------------------------
    def certificate(self, host: str, kind: str = GOOD) -> tuple[Path, Path]:
        """(certificate PEM file, key PEM file) for `host`, of the given kind."""
        if kind not in KINDS:
            raise ValueError(f"certificate kind {kind!r} is not one of {', '.join(KINDS)}")
        if (host, kind) not in self._issued:
            now = self._now
            if kind == EXPIRED:
                cert, key = self.trusted.issue(host, now - dt.timedelta(days=800), now - dt.timedelta(days=1))
            else:
                issuer = self.trusted if kind == GOOD else self.untrusted
                cert, key = issuer.issue(host, now - VALID_BEFORE, now + VALID_AFTER)
            cert_file = Path(self._dir.name) / f"{host}-{kind}.crt"  # (not with_suffix: host names have dots)
            key_file = Path(self._dir.name) / f"{host}-{kind}.key"
            cert_file.write_bytes(_pem(cert))
            self._dir.write_private(key_file.name, _key_pem(key))
            self._issued[(host, kind)] = (cert_file, key_file)
        return self._issued[(host, kind)]

    def server_context(self, host: str, kind: str = GOOD) -> ssl.SSLContext:
        """A TLS server context presenting `host`'s certificate of `kind`."""
        cert_file, key_file = self.certificate(host, kind)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert_file, key_file)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """For the rig's own HTTPS clients (tests): trusts only the rig CA, checks host names."""
        ctx = ssl.create_default_context(cadata=self.ca_pem.decode())
        return ctx

    # -- firmware --------------------------------------------------------------------------------
    def sign_firmware(self, image: bytes) -> bytes:
        """Detached Ed25519 signature of the image."""
        return self.firmware_key.sign(image)

    def close(self) -> None:
        self._dir.cleanup()


CA_FILES = ("ca.crt", "ca.key", "firmware.key", "firmware.pub")


def _lasting(folder: Path, now: dt.datetime) -> tuple[_Authority, ed25519.Ed25519PrivateKey]:
    """The CA and firmware key kept in `folder`, made there (private) if it has none yet."""
    paths = {name: folder / name for name in CA_FILES}
    if not paths["ca.key"].exists():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        authority = _Authority("PlugStream test rig CA", now)
        firmware = ed25519.Ed25519PrivateKey.generate()
        for name, data in (("ca.key", _key_pem(authority.key)), ("firmware.key", _key_pem(firmware))):
            fd = os.open(paths[name], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        paths["ca.crt"].write_bytes(_pem(authority.cert))
        paths["firmware.pub"].write_bytes(firmware.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        return authority, firmware
    try:
        key = serialization.load_pem_private_key(paths["ca.key"].read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(paths["ca.crt"].read_bytes())
        firmware = serialization.load_pem_private_key(paths["firmware.key"].read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{folder}: not a rig CA folder ({', '.join(CA_FILES)}): {exc}") from exc
    return _Authority(cert.subject.rfc4514_string(), now, key=key, cert=cert), firmware


def provisioning(ca_dir: str | Path) -> tuple[bytes, bytes]:
    """(CA certificate PEM, firmware public key PEM) a unit is provisioned with, from a rig CA folder."""
    folder = Path(ca_dir)
    try:
        return (folder / "ca.crt").read_bytes(), (folder / "firmware.pub").read_bytes()
    except OSError as exc:
        raise ValueError(f"{folder}: no rig CA here ({exc.strerror}); the harness makes it on its first run "
                         "with network.ca_dir set, or run `rig ca init DIR`") from None
