#!/bin/sh
# The layering (docs/design/relay-engine.md, issue 12 item 10), checked on
# every #include of the sources, so a violation fails CI instead of living
# on as a comment:
#   protocol/  pure: no libuv, SQLite, OpenSSL, spdlog, libsystemd, curl,
#              nothing from queue/ or daemon/ (the C library and iconv are fine)
#   queue/     the spool: SQLite, no libuv, OpenSSL, spdlog, nothing from daemon/
#   daemon/, tools/ never touch SQLite directly (only queue/ includes sqlite3.h)
# Usage: tools/check-layering.sh [SOURCE_DIR]. Exit 0 clean, 1 with each
# violation as FILE:LINE: what.
set -eu
SRC=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$SRC"
bad=0
check() {   # check DIR REGEX WHY
    out=$(grep -rnE "^[[:space:]]*#[[:space:]]*include[[:space:]]*[<\"]($2)" "$1" --include='*.h' --include='*.cpp' || true)
    if [ -n "$out" ]; then
        printf '%s\n' "$out" | sed "s|\$|   <- $3|"
        bad=1
    fi
}
check protocol 'uv\.h|sqlite3\.h|openssl/|spdlog/|systemd/|curl/|queue/|daemon/' 'protocol/ is pure (no I/O libraries, no queue/ or daemon/)'
check queue 'uv\.h|openssl/|spdlog/|systemd/|curl/|daemon/' 'queue/ knows nothing of sockets, TLS or the daemon'
check daemon 'sqlite3\.h' 'only queue/ touches SQLite'
check tools 'sqlite3\.h' 'only queue/ touches SQLite'
if [ "$bad" -ne 0 ]; then
    echo "check-layering: violations above" >&2
    exit 1
fi
echo "check-layering: protocol/, queue/, daemon/, tools/ keep their layers"
