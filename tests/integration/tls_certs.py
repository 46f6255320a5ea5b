"""Certificates for the HTTPS tests, made with the openssl CLI: one test CA per call of
make_ca(), leaf certificates for localhost/127.0.0.1 signed by it, each with a new serial."""
from __future__ import annotations

import os
import socket
import ssl
import subprocess
from pathlib import Path

TIMEOUT = 20


def openssl(*args, cwd: Path) -> None:
    run = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert run.returncode == 0, f"openssl {' '.join(args)}: {run.stderr}"


def make_ca(directory: Path) -> Path:
    """A self-signed P-256 CA in directory/ca.pem (key ca.key); returns ca.pem."""
    directory.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=deployctl test CA",
            cwd=directory)
    return directory / "ca.pem"


def make_leaf(directory: Path, stem: str, cn: str = "localhost") -> tuple[Path, Path]:
    """A leaf for localhost and 127.0.0.1 signed by directory's CA: (stem.pem, stem.key), the
    key mode 0600. Every call gets a new random serial."""
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{stem}.key", "-out", f"{stem}.csr", "-subj", f"/CN={cn}", cwd=directory)
    openssl("x509", "-req", "-in", f"{stem}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "2",
            "-extfile", "san.ext", "-out", f"{stem}.pem", cwd=directory)
    os.chmod(directory / f"{stem}.key", 0o600)
    return directory / f"{stem}.pem", directory / f"{stem}.key"


def served_serial(port: int, ca: Path, timeout: float = 5.0) -> str:
    """The serial (hex) of the certificate 127.0.0.1:port serves, verified against ca as
    localhost; raises on any TLS or connection failure."""
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.getpeercert()["serialNumber"]


def https_get(port: int, ca: Path, path: str = "/", timeout: float = 5.0) -> tuple[int, str]:
    """One HTTP/1.1 GET over a new verified TLS connection: (status, serial served)."""
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            serial = tls.getpeercert()["serialNumber"]
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                        .encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.") else 0
    return status, serial


def s_client_verifies(port: int, ca: Path) -> subprocess.CompletedProcess:
    """openssl s_client -verify_return_error against 127.0.0.1:port as localhost."""
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
         "-verify_return_error", "-verify_hostname", "localhost", "-CAfile", str(ca),
         "-brief"], input="", capture_output=True, text=True, timeout=TIMEOUT)
