#!/usr/bin/env bash
# Builds the Debian package from a build tree of its own and prints the .deb's path.
#   packaging/build-deb.sh BUILD_DIR [OUT_DIR]
# BUILD_DIR is configured Release with prefix /usr (reused if it exists); only what the
# package holds is built. The .deb (deployctl_VERSION_ARCH.deb) is copied to OUT_DIR if given.
# JOBS sets the build's parallelism (default: the number of CPUs); VERSION the package's and
# the binaries' version (default: the CMake project's; the upgrade test builds a newer one);
# BUILD_TYPE the CMake build type (default Release). CMake takes a compiler launcher (ccache)
# from $CMAKE_CXX_COMPILER_LAUNCHER.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:?usage: $0 BUILD_DIR [OUT_DIR]}"
out="${2:-}"

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" \
  -DCMAKE_INSTALL_PREFIX=/usr -DDEPLOYCTL_VERSION="${VERSION:-}" >/dev/null
cmake --build "$build" -j "${JOBS:-$(nproc)}" --target deployctl deploy-server deployctl-man
rm -f "$build"/deployctl_*.deb
(cd "$build" && cpack -G DEB >/dev/null)
deb="$(ls "$build"/deployctl_*.deb)"
if [ -n "$out" ]; then
  mkdir -p "$out"
  cp "$deb" "$out/"
  deb="$out/$(basename "$deb")"
fi
echo "$deb"
