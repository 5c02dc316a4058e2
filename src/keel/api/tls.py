"""The local TLS certificate: simple-salesforce and django-salesforce only speak https, so ``keel up`` serves
HTTPS out of the box with a self-signed certificate whose SANs cover 127.0.0.1, ::1 and localhost. Clients trust
it through ``REQUESTS_CA_BUNDLE`` / ``NODE_EXTRA_CA_CERTS``; production configures real ``tls_cert``/``tls_key``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from keel.settings import Settings

CERT_NAME, KEY_NAME = "keel-local-cert.pem", "keel-local-key.pem"


def certificate_paths(settings: Settings) -> tuple[Path, Path]:
    """The configured certificate and key, or the self-signed pair under ``data_dir`` (created when missing)."""
    if settings.tls_cert and settings.tls_key:
        return Path(settings.tls_cert), Path(settings.tls_key)
    base = Path(settings.data_dir)
    cert, key = base / CERT_NAME, base / KEY_NAME
    if not (cert.is_file() and key.is_file()):
        create_self_signed(cert, key)
    return cert, key


def create_self_signed(cert_path: Path, key_path: Path, *, days: int = 825) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Keel local"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Keel")])
    now = dt.datetime.now(dt.UTC)
    san = x509.SubjectAlternativeName([
        x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days)).add_extension(san, critical=False)
        # A CA:TRUE self-signed leaf is what OpenSSL and Node accept as a trust anchor in a CA bundle.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
