"""The http health probe over TLS: for a service with [tls] the supervisor's http probe does a
TLS handshake (no certificate verification) before its GET. Without it a replica that serves
only HTTPS would never pass an http probe. Real deploy-server replicas, 127.0.0.1 only."""
from __future__ import annotations

import pytest

from harness import all_ready, wait_until

# An HTTPS server that knows nothing of deployctl's control protocol (so readiness and health
# come from the http probe alone): Python's http.server over TLS on the inherited socket.
TLS_WORKER = """
import http.server, os, socket, ssl
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\\n")
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(os.environ["DEPLOYCTL_TLS_CERT"], os.environ["DEPLOYCTL_TLS_KEY"])
server.socket = context.wrap_socket(socket.socket(fileno=3), server_side=True)
server.serve_forever()
"""
from tls_certs import https_get, make_ca, make_leaf


@pytest.fixture
def pki(tmp_path):
    certs = tmp_path / "pki"
    ca = make_ca(certs)
    cert, key = make_leaf(certs, "site")
    return {"ca": ca, "cert": cert, "key": key}


def test_http_probe_speaks_tls_to_a_tls_service(deployment, pki, tmp_path):
    worker = tmp_path / "tls_worker.py"
    worker.write_text(TLS_WORKER)
    dep = deployment(f'''
name = "@NAME@"

[services.web]
command = ["@PYTHON@", "{worker}"]
replicas = 2
listen = ["127.0.0.1:@PORT@"]

[services.web.tls]
cert = "{pki["cert"]}"
key = "{pki["key"]}"

[services.web.health]
kind = "http"
path = "/healthz"
interval = "500ms"
start_period = "20s"
''')
    run = dep.up(timeout=60)
    assert run.returncode == 0, run.describe() + dep.diagnostics()
    status = dep.wait_for(lambda s: all_ready(s, 2), timeout=30, what="2 replicas ready by probe")
    assert https_get(dep.port, pki["ca"], "/healthz")[0] == 200
    metrics = dep.deployctl("metrics", "--name", dep.name).stdout
    passes = [line for line in metrics.splitlines()
              if line.startswith('deployctl_health_probes_total{service="web",result="pass"}')]
    assert passes and float(passes[0].rsplit(" ", 1)[1]) >= 2, metrics


# The same server speaking HTTP/1.1 (keep-alive), noting each connection it accepts and each
# request in LOG: with TLS, a kept connection saves a handshake per check.
KEEP_ALIVE_TLS_WORKER = TLS_WORKER.replace(
    "class Handler(http.server.BaseHTTPRequestHandler):\n",
    "class Handler(http.server.BaseHTTPRequestHandler):\n"
    "    protocol_version = 'HTTP/1.1'\n"
    "    def setup(self):\n"
    "        super().setup()\n"
    "        note('accept')\n"
    "    def handle_one_request(self):\n"
    "        super().handle_one_request()\n"
    "        if self.requestline: note('request')\n",
).replace("import http.server, os, socket, ssl\n",
          "import http.server, os, socket, ssl, sys\n"
          "def note(what):\n"
          "    with open(sys.argv[1], 'a') as log:\n"
          "        log.write(what + '\\n')\n")


def test_https_probe_keeps_its_tls_connection_across_checks(deployment, pki, tmp_path):
    worker = tmp_path / "tls_worker.py"
    worker.write_text(KEEP_ALIVE_TLS_WORKER)
    log = tmp_path / "connections"
    dep = deployment(f'''
name = "@NAME@"

[services.web]
command = ["@PYTHON@", "{worker}", "{log}"]
replicas = 2
listen = ["127.0.0.1:@PORT@"]

[services.web.tls]
cert = "{pki["cert"]}"
key = "{pki["key"]}"

[services.web.health]
kind = "http"
interval = "300ms"
timeout = "300ms"
failures = 3
start_period = "20s"
''')
    run = dep.up(timeout=60)
    assert run.returncode == 0, run.describe() + dep.diagnostics()
    dep.wait_for(lambda s: all_ready(s, 2), timeout=30, what="2 replicas ready by probe")

    def noted(what: str) -> int:
        return log.read_text().split().count(what) if log.exists() else 0
    wait_until(lambda: noted("request") >= 20, 30, "20 checks over TLS")
    # One kept connection per replica (the shared socket may hand both to one process).
    assert noted("accept") == 2, log.read_text()
