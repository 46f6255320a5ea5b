#!/usr/bin/env bash
# Installs everything deployctl needs to build, test and run, from Debian 12's packages.
# Idempotent: does nothing when every package is already installed.
set -euo pipefail

packages=(
  # build
  g++ make cmake pkg-config
  libboost-dev libtomlplusplus-dev libspdlog-dev libsdbus-c++-dev libsystemd-dev doctest-dev
  libssl-dev
  # sanitizer build and libFuzzer targets
  clang libclang-rt-14-dev
  # tests: Debian's interpreter with pytest; setpriv (util-linux), ps (procps), HTTP load
  python3 python3-pytest util-linux procps curl wrk
  # TLS tests and tests/bench/tls_bench.py make certificates and connect with the openssl CLI
  openssl
  # the FastAPI examples and tests/integration/test_apps.py
  python3-fastapi python3-uvicorn gunicorn
  # systemd-analyze and busctl (the unit and D-Bus tests; PID 1 need not be systemd), a private
  # dbus-daemon for the D-Bus tests, dpkg-dev for the .deb
  systemd dbus-daemon dpkg-dev
  # the peers tests/bench/peers.py measures deployctl against
  runit s6 supervisor nginx
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
