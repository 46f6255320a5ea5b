#!/usr/bin/env bash
# Installs everything deployctl needs to build, test and run, from Debian 12's packages.
# Idempotent: does nothing when every package is already installed.
set -euo pipefail

packages=(
  # build
  g++ make cmake pkg-config ccache
  libboost-dev libtomlplusplus-dev libspdlog-dev libsdbus-c++-dev libsystemd-dev doctest-dev
  nlohmann-json3-dev
  libssl-dev
  # `deployctl top` draws with curses
  libncurses-dev
  # tests/integration/test_top.py drives `deployctl top` in a detached tmux session
  tmux
  # sanitizer build and libFuzzer targets
  clang libclang-rt-14-dev
  # tests: Debian's interpreter with pytest; setpriv (util-linux), ps (procps), HTTP load
  python3 python3-pytest util-linux procps curl wrk
  # the FastAPI examples (the quick start), tests/integration/test_apps.py and
  # test_asgi_servers.py, tests/bench/fastapi_bench.py: every ASGI server of FastAPI's guide
  python3-fastapi python3-uvicorn python3-uvloop python3-httptools gunicorn python3-hypercorn
  python3-daphne
  # TLS tests and tests/bench/tls_bench.py make certificates and connect with the openssl CLI
  openssl
  # ACME: lego is the client the supervisor runs ([tls] acme); pebble (with pebble-challtestsrv)
  # is the test ACME server of tests/integration/test_acme.py
  lego pebble
  # systemd-analyze and busctl (the unit and D-Bus tests; PID 1 need not be systemd), a private
  # dbus-daemon for the D-Bus tests, dpkg-dev for the .deb
  systemd dbus-daemon dpkg-dev
  # the peers tests/bench/peers.py measures deployctl against
  runit s6 supervisor nginx
  # `deployctl export` checks: the Kubernetes OpenAPI models (strict schema check, offline),
  # YAML for reading the output back (tests/export/k8s_schema.py, test_export.py)
  python3-kubernetes python3-yaml
  # metrics: promtool checks the exposition, a real Prometheus server scrapes a deployment
  # (tests/integration/test_metrics.py)
  prometheus
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}"
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
