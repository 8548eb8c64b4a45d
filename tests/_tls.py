"""Test certificates for the locked storage proxy: two CAs and a server certificate for 127.0.0.1 / localhost.

:func:`make_pki` writes ``ca.pem`` (signed the server's certificate), ``other-ca.pem`` (an unrelated CA),
``server.pem`` and ``server.key`` to a folder, with the ``cryptography`` package when it is installed,
else with the ``openssl`` command.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA that signed server.pem
    other_ca: Path  # a CA that signed nothing the proxy serves
    cert: Path
    key: Path


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    pki = Pki(folder / "ca.pem", folder / "other-ca.pem", folder / "server.pem", folder / "server.key")
    try:
        import cryptography  # noqa: F401
    except ImportError:
        _with_openssl(folder, pki)
    else:
        _with_cryptography(pki)
    return pki


def _with_cryptography(pki: Pki) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def builder(subject: x509.Name, issuer: x509.Name, key) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=2)))

    def ca(cn: str):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (builder(name(cn), name(cn), key)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                             crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        return key, cert

    pem = serialization.Encoding.PEM
    ca_key, ca_cert = ca("tuner test CA")
    _, other_cert = ca("another test CA")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (builder(name("localhost"), ca_cert.subject, key)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pki.ca.write_bytes(ca_cert.public_bytes(pem))
    pki.other_ca.write_bytes(other_cert.public_bytes(pem))
    pki.cert.write_bytes(cert.public_bytes(pem))
    pki.key.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def _with_openssl(folder: Path, pki: Pki) -> None:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    for stem, cn in (("ca", "tuner test CA"), ("other-ca", "another test CA")):
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-subj", f"/CN={cn}", "-keyout", f"{stem}.key", "-out", f"{stem}.pem",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
        "-keyout", "server.key", "-out", "server.csr")
    (folder / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "server.ext", "-out", "server.pem")


TEST_TOKEN = "tuner-test-token-0123456789abcdef"


def lock_proxy(folder: Path, monkeypatch) -> tuple[str, ...]:
    """Certificates in ``folder`` and this process's environment (inherited by the proxy and every client
    it starts) set for a locked proxy: ``$TUNER_PROXY_TOKEN`` and ``$TUNER_PROXY_CA``. Returns the
    ``storage-proxy`` flags that serve TLS with them."""
    pki = make_pki(folder)
    monkeypatch.setenv("TUNER_PROXY_TOKEN", TEST_TOKEN)
    monkeypatch.setenv("TUNER_PROXY_CA", str(pki.ca))
    monkeypatch.delenv("TUNER_PROXY_TOKEN_FILE", raising=False)
    return ("--tls-cert", str(pki.cert), "--tls-key", str(pki.key))
