#!/bin/sh
# Builds the Debian package: a Release build in build-release (or $1), then
# `cpack -G DEB` there. Prints the .deb's path and what dpkg-deb sees in it.
# Installing it is left to the operator: `apt install ./outbox_*.deb`.
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-"$SRC/build-release"}
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DOUTBOX_TESTS=OFF
cmake --build "$BUILD" -j"$(nproc)"
(cd "$BUILD" && cpack -G DEB)
DEB=""
for f in "$BUILD"/outbox_*.deb; do DEB=$f; done
[ -f "$DEB" ] || { echo "package.sh: no outbox_*.deb in $BUILD" >&2; exit 1; }
dpkg-deb --info "$DEB"
dpkg-deb --contents "$DEB"
echo "$DEB"
