"""`deployctl validate` on [services.X.tls] files made here with the openssl CLI: a good pair
is described (subject, issuer, expiry); each broken pair is an error with exit 2 that names the
spec file, the key and the file. No network, no processes left behind."""
import os
import subprocess

import pytest

DEPLOYCTL = os.environ.get("DEPLOYCTL_BIN", "")
TIMEOUT = 30

SPEC = """[services.web]
command = ["./server", "--cert", "{{tls_cert}}", "--key", "{{tls_key}}"]
listen = ["127.0.0.1:8443"]
env = {{ DEPLOYCTL_TLS_CERT = "{{tls_cert}}" }}

[services.web.tls]
cert = "{cert}"
key = "{key}"
"""

CA_CONFIG = """[ca]
default_ca = d
[d]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = p
[p]
commonName = supplied
"""


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def pem(tmp_path_factory):
    """site.pem/site.key (valid 30 days), other.key, expired.pem (January 2020, made with
    `openssl ca -startdate/-enddate`, since OpenSSL 3.0's x509 cannot backdate), garbage.pem."""
    d = tmp_path_factory.mktemp("pem")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "site.key", "-out", "site.pem", "-days", "30",
            "-subj", "/CN=app.example.com", cwd=d)
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", "other.key", cwd=d)
    (d / "ca.cnf").write_text(CA_CONFIG)
    (d / "index.txt").write_text("")
    (d / "serial").write_text("01\n")
    openssl("req", "-new", "-key", "site.key", "-subj", "/CN=expired.example.com",
            "-out", "expired.csr", cwd=d)
    openssl("ca", "-batch", "-config", "ca.cnf", "-selfsign", "-keyfile", "site.key",
            "-in", "expired.csr", "-out", "expired.pem",
            "-startdate", "20200101000000Z", "-enddate", "20200201000000Z", cwd=d)
    (d / "garbage.pem").write_text("this is not PEM\n")
    for key in ("site.key", "other.key"):
        os.chmod(d / key, 0o600)
    return d


def validate(tmp_path, cert, key):
    spec = tmp_path / "deploy.toml"
    spec.write_text(SPEC.format(cert=cert, key=key))
    assert DEPLOYCTL, "set DEPLOYCTL_BIN to the deployctl binary"
    return subprocess.run([DEPLOYCTL, "validate", str(spec)], capture_output=True, text=True,
                          timeout=TIMEOUT)


def test_a_good_pair_is_described(pem, tmp_path):
    result = validate(tmp_path, pem / "site.pem", pem / "site.key")
    assert result.returncode == 0, result.stderr
    assert "tls web: subject CN=app.example.com, issuer CN=app.example.com, expires " in \
        result.stdout
    assert "(29 days left)" in result.stdout or "(30 days left)" in result.stdout
    assert result.stdout.rstrip().endswith("ok (1 services, 1 replicas)")


@pytest.mark.parametrize("cert, key, key_path, message", [
    ("expired.pem", "site.key", "cert", "the certificate expired on 2020-02-01 00:00:00 UTC"),
    ("site.pem", "other.key", "key", "the key does not match the certificate"),
    ("missing.pem", "site.key", "cert", "cannot read: No such file or directory"),
    ("garbage.pem", "site.key", "cert", "no PEM certificate in it"),
    ("site.pem", "garbage.pem", "key", "no PEM private key in it"),
])
def test_broken_pairs_exit_2_naming_file_key_and_problem(pem, tmp_path, cert, key, key_path,
                                                         message):
    result = validate(tmp_path, pem / cert, pem / key)
    assert result.returncode == 2
    bad_file = pem / (cert if key_path == "cert" else key)
    assert f"deploy.toml: services.web.tls.{key_path}: {bad_file}: {message}" in result.stderr
    assert "ok (" not in result.stdout


def test_a_key_readable_by_everyone_is_an_error_by_its_group_is_not(pem, tmp_path):
    key = tmp_path / "shared.key"
    key.write_bytes((pem / "site.key").read_bytes())
    os.chmod(key, 0o644)
    result = validate(tmp_path, pem / "site.pem", key)
    assert result.returncode == 2
    assert "the private key is accessible to every user (mode 0644)" in result.stderr
    os.chmod(key, 0o640)
    assert validate(tmp_path, pem / "site.pem", key).returncode == 0


def test_tls_placeholders_need_a_tls_table(tmp_path):
    spec = tmp_path / "deploy.toml"
    spec.write_text('[services.web]\ncommand = ["./server", "{tls_key}"]\n'
                    'listen = ["127.0.0.1:8443"]\n')
    result = subprocess.run([DEPLOYCTL, "validate", str(spec)], capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 2
    assert ("deploy.toml:2:24: services.web.command[1]: {tls_cert} and {tls_key} need a "
            "[services.web.tls] table") in result.stderr
