"""Throw-away TLS certificates for broker tests, made with the ``openssl`` CLI.

A CA, a server certificate for ``127.0.0.1`` and ``localhost`` signed by
it, and optionally a client certificate. EC P-256 keys: quick to make.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

DAYS = "2"
CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path | None = None
    client_key: Path | None = None


def _openssl(*args: str | Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise RuntimeError("the openssl command is not installed (Debian: apt-get install openssl)")
    done = subprocess.run(
        [binary, *map(str, args)], capture_output=True, text=True, check=False, timeout=30
    )
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))} failed:\n{done.stderr}")


def _signed(
    folder: Path, name: str, subject: str, extensions: str, ca_cert: Path, ca_key: Path
) -> tuple[Path, Path]:
    key, csr, cert, ext = (folder / f"{name}.{s}" for s in ("key", "csr", "crt", "ext"))
    _openssl("req", *CURVE, "-keyout", key, "-out", csr, "-subj", subject)
    ext.write_text(extensions)
    _openssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca_cert,
        "-CAkey",
        ca_key,
        "-CAcreateserial",
        "-out",
        cert,
        "-days",
        DAYS,
        "-sha256",
        "-extfile",
        ext,
    )
    return cert, key


def make_certs(
    folder: Path, *, client: bool = True, ca_name: str = "streetwatch-test-ca"
) -> TlsFiles:
    """Write a CA, a server certificate and (``client``) a client certificate into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = folder / "ca.crt", folder / "ca.key"
    _openssl(
        "req",
        "-x509",
        *CURVE,
        "-keyout",
        ca_key,
        "-out",
        ca_cert,
        "-days",
        DAYS,
        "-sha256",
        "-subj",
        f"/CN={ca_name}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    common = "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\nbasicConstraints=CA:FALSE\n"
    server_cert, server_key = _signed(
        folder,
        "server",
        "/CN=localhost",
        common
        + "keyUsage=critical,digitalSignature,keyAgreement\n"
        + "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        ca_cert,
        ca_key,
    )
    client_cert = client_key = None
    if client:
        client_cert, client_key = _signed(
            folder,
            "client",
            "/CN=streetwatch-test-client",
            common + "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
            ca_cert,
            ca_key,
        )
    return TlsFiles(ca_cert, ca_key, server_cert, server_key, client_cert, client_key)
