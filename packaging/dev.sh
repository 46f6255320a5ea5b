#!/usr/bin/env bash
# The quick start, for a fresh Debian 12 machine:
#   packaging/dev.sh up     install dependencies, build, run the bundled FastAPI example:
#                           config/examples/fastapi/quickstart.toml (Ctrl+C stops it)
#   packaging/dev.sh up-static  the same with config/examples/deploy.toml (deploy-server)
#   packaging/dev.sh test   install dependencies, build, run the whole test suite
#   packaging/dev.sh build  install dependencies and build only
#   packaging/dev.sh deb    install dependencies, build build/deployctl_VERSION_ARCH.deb
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build"
jobs="$(nproc)"

# ccache, with paths relative to the source tree: the second build of the sources that the
# tests make (the newer .deb of test_systemd_real.py, in a sibling tree) and rebuilds after
# small changes take seconds instead of minutes. Only what goes through this script.
export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1
launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)

build() {
  "$root/packaging/install-deps.sh"
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" >/dev/null
  cmake --build "$build" -j "$jobs"
}

# ASan + UBSan (and LeakSanitizer) build with clang: every test runs again under the
# sanitizers, and every libFuzzer target gets a bounded run.
sanitized_tests() {
  local sbuild="$root/build-sanitize"
  CC=clang CXX=clang++ cmake -S "$root" -B "$sbuild" -DCMAKE_BUILD_TYPE=Debug \
    -DDEPLOYCTL_SANITIZE=ON -DDEPLOYCTL_FUZZ=ON "${launcher[@]}" >/dev/null
  cmake --build "$sbuild" -j "$jobs"
  (cd "$sbuild" && ctest --output-on-failure -j "$jobs")
}

case "${1:-}" in
  up)
    build
    exec "$build/bin/deployctl" up "$root/config/examples/fastapi/quickstart.toml"
    ;;
  up-static)
    build
    exec "$build/bin/deployctl" up "$root/config/examples/deploy.toml"
    ;;
  test)
    build
    (cd "$build" && ctest --output-on-failure -j "$jobs")
    # Benchmark smoke test: fails only if a scenario cannot run; its figures gate nothing.
    /usr/bin/python3 "$root/tests/bench/peers.py" --quick --bin "$build/bin"
    sanitized_tests
    ;;
  build)
    build
    ;;
  deb)
    "$root/packaging/install-deps.sh"
    # A Release tree with prefix /usr of its own, so the development build is left as it is.
    JOBS="$jobs" "$root/packaging/build-deb.sh" "$root/build-deb" "$build"
    ;;
  *)
    echo "usage: $0 up|up-static|test|build|deb" >&2
    exit 2
    ;;
esac
