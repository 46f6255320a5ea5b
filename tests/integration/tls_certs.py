"""Certificates for the HTTPS tests, made with the openssl CLI: one test CA per call of
make_ca(), leaf certificates for localhost/127.0.0.1 signed by it, each with a new serial.
Also what the HTTPS and ACME tests share: TLS clients and the ASGI app and service."""
from __future__ import annotations

import collections
import os
import socket
import ssl
import subprocess
from pathlib import Path

from harness import RequestLoop

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


def https_get(port: int, ca: Path, path: str = "/", timeout: float = 5.0,
              hostname: str = "localhost") -> tuple[int, str]:
    """One HTTP/1.1 GET over a new TLS connection to 127.0.0.1:port, verified against ca as
    hostname: (status, serial served)."""
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=hostname) as tls:
            serial = tls.getpeercert()["serialNumber"]
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {hostname}\r\nConnection: close\r\n\r\n"
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


class TlsClientLoop(RequestLoop):
    """New verified TLS connections, one GET /whoami each, one after the other, until stopped
    or bounded (count and time). Records failures and the serials served."""

    def __init__(self, port: int, ca: Path, hostname: str = "localhost", limit: int = 5000,
                 seconds: float = 60.0):
        super().__init__(limit, seconds)
        self.port, self.ca, self.hostname = port, ca, hostname
        self.failures: list[str] = []
        self.serials: collections.Counter = collections.Counter()
        self.last_serial = ""

    def attempt(self) -> None:
        try:
            code, serial = https_get(self.port, self.ca, "/whoami", hostname=self.hostname)
            self.serials[serial] += 1
            self.last_serial = serial
            if code != 200:
                self.failures.append(f"HTTP {code}")
        except (OSError, ValueError) as error:
            self.failures.append(repr(error))


ASGI_APP = '''
import os
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = (os.environ.get("DEPLOYCTL_SERVICE", "?") + "." +
            os.environ.get("DEPLOYCTL_REPLICA", "?")).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
'''

# The command arguments (after @PYTHON@) of each ASGI server, loading {tls_cert}/{tls_key}.
ASGI_SERVERS = {
    "uvicorn": '"-m", "uvicorn", "app:app", "--fd", "3", '
               '"--ssl-certfile", "{tls_cert}", "--ssl-keyfile", "{tls_key}"',
    "gunicorn": '"-m", "gunicorn", "app:app", "--worker-class", "uvicorn.workers.UvicornWorker",'
                ' "--workers", "1", "--certfile", "{tls_cert}", "--keyfile", "{tls_key}"',
}


def asgi_spec(server: str, tls_section: str, extra: str = "") -> str:
    """A deployment spec (harness placeholders) of service `web`: 2 replicas of `server`
    serving ASGI_APP from the spec's app/ directory (write_asgi_app) with `tls_section`;
    `extra` lines go into [services.web]."""
    return f'''
name = "@NAME@"

[services.web]
command = ["@PYTHON@", {ASGI_SERVERS[server]}]
replicas = 2
listen = ["127.0.0.1:@PORT@"]
working_dir = "app"
{extra}

[services.web.health]
kind = "tcp"
start_period = "30s"

[services.web.stop]
signal = "SIGTERM"
timeout = "10s"
{tls_section}'''


def write_asgi_app(directory: Path) -> None:
    """directory/app/app.py: ASGI_APP, readable by every user."""
    (directory / "app").mkdir(mode=0o755)
    (directory / "app" / "app.py").write_text(ASGI_APP)
