"""deploy-server over TLS, end to end: a certificate made here with the openssl CLI, real
clients (curl, openssl s_client, Python's ssl), 127.0.0.1 only, every wait bounded.

Reuses the process harness of test_server.py (ServerProcess, Supervised, Client).
"""

import os
import socket
import ssl
import subprocess

import pytest

from test_server import (TIMEOUT, Client, Supervised, base_env, build_request,  # noqa: F401
                         spawn, refuses_connections, wait_until)


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A self-signed P-256 certificate for localhost and 127.0.0.1, its key, and a second key
    that does not match it; paths as strings."""
    d = tmp_path_factory.mktemp("tls")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "key.pem", "-out", "cert.pem", "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", cwd=d)
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", "other.key", cwd=d)
    (d / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n")
    files = {name: str(d / name) for name in ("cert.pem", "key.pem", "other.key", "garbage.pem")}
    return {**files, "dir": str(d)}


@pytest.fixture
def https(spawn, certs):
    """A standalone TLS server on a free port; returns (process, port)."""

    def start(*args):
        server = spawn("--listen", "127.0.0.1:0", "--debug-endpoints",
                       "--tls-cert", certs["cert.pem"], "--tls-key", certs["key.pem"], *args)
        return server, server.port()

    return start


def client_context(certs, **versions):
    context = ssl.create_default_context(cafile=certs["cert.pem"])
    # Python sets OpenSSL's IGNORE_UNEXPECTED_EOF, which reads an EOF without close_notify as
    # a clean close; closed_with_close_notify() must tell the two apart.
    context.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
    for name, value in versions.items():
        setattr(context, name, value)
    return context


class TlsClient(Client):
    """The raw HTTP/1.1 client of test_server.py over TLS. With client_context(), an EOF
    without close_notify raises ssl.SSLError instead of reading as a clean close."""

    def __init__(self, port, context, session=None):
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock = context.wrap_socket(raw, server_hostname="localhost", session=session,
                                        suppress_ragged_eofs=False)
        self.buffer = b""

    def closed_with_close_notify(self):
        """True once the server ended TLS with close_notify (waits for it, bounded)."""
        return self.sock.recv(1) == b""


def test_curl_gets_https_with_alpn_http11(https, certs):
    _server, port = https()
    result = subprocess.run(
        ["curl", "-sS", "-v", "--cacert", certs["cert.pem"], "-w", "%{http_version}\n",
         f"https://localhost:{port}/healthz", f"https://localhost:{port}/whoami"],
        capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok\n1.1\nstandalone ")
    assert "ALPN: server accepted http/1.1" in result.stderr
    assert "Re-using existing connection" in result.stderr  # keep-alive over TLS


def test_openssl_s_client_verifies_and_negotiates_http11(https, certs):
    _server, port = https()
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-verify_return_error",
         "-CAfile", certs["cert.pem"], "-alpn", "h2,http/1.1", "-servername", "localhost",
         "-ign_eof"],  # reads the answer up to the server's close, not stdin's EOF
        input="GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert "ALPN protocol: http/1.1" in result.stdout
    assert "Verify return code: 0 (ok)" in result.stdout
    assert "HTTP/1.1 200 OK" in result.stdout


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls12_and_tls13_with_session_resumption(https, certs, version):
    _server, port = https()
    context = client_context(certs, minimum_version=version, maximum_version=version)
    first = TlsClient(port, context)
    assert first.request("/healthz").status == 200  # TLS 1.3 tickets arrive with the data
    assert first.sock.version() == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[version.name]
    assert first.sock.selected_alpn_protocol() is None  # the client offered none
    session = first.sock.session
    first.close()
    second = TlsClient(port, context, session=session)
    assert second.request("/healthz").status == 200
    assert second.sock.session_reused
    second.close()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
def test_tls11_is_refused_by_the_server(https, certs):
    _server, port = https()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # lets this client offer TLS 1.1 at all
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError, match="(?i)protocol.version"):
        TlsClient(port, context)


def test_pipelined_requests_over_tls(https, certs):
    _server, port = https()
    client = TlsClient(port, client_context(certs))
    client.send(build_request("/healthz") * 3 + build_request("/whoami"))
    bodies = [client.read_response().body for _ in range(4)]
    assert bodies[:3] == [b"ok\n"] * 3 and bodies[3].startswith(b"standalone ")
    client.send(build_request("/healthz", headers=["Connection: close"]))
    assert client.read_response().headers["connection"] == "close"
    assert client.closed_with_close_notify()


def test_plain_http_and_silent_peers_are_closed(https):
    _server, port = https("--handshake-timeout", "1")
    plain = Client(port)
    plain.send(build_request("/healthz"))
    assert plain.closed_by_server()  # not a ClientHello: the handshake fails, no answer
    silent = Client(port)
    silent.sock.settimeout(4)  # the handshake timeout is 1 s, checked about once a second
    assert silent.closed_by_server()


@pytest.mark.parametrize("cert, key, message", [
    ("missing.pem", "key.pem", r"missing\.pem: cannot read: No such file"),
    ("garbage.pem", "key.pem", r"garbage\.pem: not a PEM certificate chain"),
    ("cert.pem", "garbage.pem", r"garbage\.pem: not a PEM private key"),
    ("cert.pem", "other.key", r"other\.key: the key does not belong to .*cert\.pem"),
    ("cert.pem", None, r"a TLS certificate is given but no key"),
])
def test_bad_certificate_or_key_fails_before_ready(spawn, certs, cert, key, message):
    env = {"DEPLOYCTL_TLS_CERT": f"{certs['dir']}/{cert}"}
    if key:
        env["DEPLOYCTL_TLS_KEY"] = f"{certs['dir']}/{key}"
    supervised = Supervised(lambda **kw: spawn(**{**kw, "env": base_env(**env)}))
    assert supervised.control.recv(4096) == b""  # EOF: no READY=1 before the exit
    assert supervised.server.wait_exit() == 1
    supervised.server.wait_for_line(message)


def test_drain_over_tls_finishes_requests_and_sends_close_notify(spawn, certs):
    supervised = Supervised(spawn, "--debug-endpoints", "--drain-grace", "300",
                            "--tls-cert", certs["cert.pem"], "--tls-key", certs["key.pem"])
    assert supervised.receive() == {"READY": "1"}
    busy = TlsClient(supervised.port, client_context(certs))
    idle = TlsClient(supervised.port, client_context(certs))
    assert idle.request("/healthz").status == 200
    busy.send(build_request("/sleep/500"))
    wait_until(lambda: supervised.ping(1)[1] == 1, "the sleep request is in flight")

    supervised.control.send(b"DRAIN=1\n")
    assert supervised.receive() == {"STOPPING": "1"}
    assert idle.closed_with_close_notify()  # idle keep-alive: closed after the drain grace
    wait_until(lambda: refuses_connections(supervised.port), "the listening socket is closed")
    response = busy.read_response()
    assert (response.status, response.body) == (200, b"slept 500 ms\n")
    assert response.headers["connection"] == "close"
    assert busy.closed_with_close_notify()
    assert supervised.server.wait_exit() == 0


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_servers_sharing_a_ticket_key_resume_each_others_sessions(spawn, certs, tmp_path,
                                                                  version):
    # Replicas share one listening socket, so a client's next connection may reach another
    # replica: with DEPLOYCTL_TLS_TICKET_KEY they all read each other's tickets.
    ticket_key = tmp_path / "ticket.key"
    ticket_key.write_bytes(os.urandom(80))

    def start(**extra):
        server = spawn("--listen", "127.0.0.1:0", env=base_env(
            DEPLOYCTL_TLS_CERT=certs["cert.pem"], DEPLOYCTL_TLS_KEY=certs["key.pem"], **extra))
        return server.port()

    a, b = (start(DEPLOYCTL_TLS_TICKET_KEY=str(ticket_key)) for _ in range(2))
    stranger = start()  # its own random ticket key
    context = client_context(certs, minimum_version=version, maximum_version=version)
    first = TlsClient(a, context)
    assert first.request("/healthz").status == 200
    session = first.sock.session
    first.close()
    for port, resumes in ((b, True), (a, True), (stranger, False)):
        client = TlsClient(port, context, session=session)
        assert client.request("/healthz").status == 200
        assert client.sock.session_reused == resumes, port
        client.close()


def test_a_ticket_key_file_of_the_wrong_size_fails_the_start(spawn, certs, tmp_path):
    bad = tmp_path / "short.key"
    bad.write_bytes(b"x" * 48)
    server = spawn("--listen", "127.0.0.1:0", env=base_env(
        DEPLOYCTL_TLS_CERT=certs["cert.pem"], DEPLOYCTL_TLS_KEY=certs["key.pem"],
        DEPLOYCTL_TLS_TICKET_KEY=str(bad)))
    assert server.wait_exit() == 1
    server.wait_for_line(r"short\.key: a session ticket key file holds exactly 80 bytes \(got 48\)")


TLS_SERVICE = """
name = "@NAME@"

[services.web]
command = @SERVER_COMMAND@
replicas = 2
listen = ["127.0.0.1:@PORT@"]
# The supervisor does not set these for [tls] services yet (issue 13): the spec passes them.
env = { DEPLOYCTL_TLS_CERT = "@DIR@/cert.pem", DEPLOYCTL_TLS_KEY = "@DIR@/key.pem" }

[services.web.tls]
cert = "cert.pem"
key = "key.pem"

[services.web.stop]
timeout = "3s"
"""


def test_replicas_under_deployctl_serve_https_on_the_inherited_socket(deployment, certs):
    dep = deployment(TLS_SERVICE)
    for name in ("cert.pem", "key.pem"):
        (dep.dir / name).write_bytes(open(certs[name], "rb").read())
    os.chmod(dep.dir / "key.pem", 0o600)
    validate = dep.deployctl("validate", str(dep.spec_path))
    assert validate.returncode == 0, validate.describe()
    run = dep.up()
    assert run.returncode == 0, run.describe()  # READY=1 from both, on the TLS context
    context = client_context(certs)
    seen = set()
    for _ in range(20):
        client = TlsClient(dep.port, context)
        seen.add(client.request("/whoami").body.split()[0])
        assert client.sock.version() == "TLSv1.3"
        client.close()
        if len(seen) == 2:
            break
    assert seen <= {b"web.0", b"web.1"} and seen, seen
