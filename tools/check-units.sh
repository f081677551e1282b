#!/bin/sh
# Checks the systemd units the way systemd will read them once installed:
#   1. `systemd-analyze verify` on a temporary root holding the host's units
#      and this build installed with the /usr prefix (so /usr/sbin/outboxd,
#      the man pages of Documentation= and /bin/kill of ExecReload= exist);
#      any complaint fails.
#   2. `systemd-analyze security --offline=yes` on outboxd.service; prints the
#      exposure figure and fails above the ceiling (default 2.0).
# Usage: tools/check-units.sh BUILD_DIR [MAX_EXPOSURE]
# Exit: 0 ok, 1 a check failed, 77 systemd-analyze is missing (ctest: skipped).
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:?usage: check-units.sh BUILD_DIR [MAX_EXPOSURE]}
MAX=${2:-2.0}
if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "check-units: systemd-analyze not installed; skipped"
    exit 77
fi
ROOT=$(mktemp -d "${TMPDIR:-/tmp}/outbox-units.XXXXXX")
trap 'rm -rf "$ROOT"' EXIT INT TERM
UNITDIR="$ROOT/lib/systemd/system"

# The host's units first (sysinit.target, network-online.target, ...): a start
# transaction is built through them. Ours then take their place.
mkdir -p "$UNITDIR" "$ROOT/usr/bin"
for d in /lib/systemd/system /usr/lib/systemd/system; do
    if [ -d "$d" ]; then cp -a "$d/." "$UNITDIR/"; fi
done
ln -s usr/bin "$ROOT/bin"
for k in /usr/bin/kill /bin/kill; do
    if [ -x "$k" ]; then cp "$k" "$ROOT/usr/bin/kill"; break; fi
done
DESTDIR="$ROOT" cmake --install "$BUILD" --prefix /usr >/dev/null
for u in outboxd.service outboxd.socket outboxd-submission.socket outboxd-submissions.socket; do
    if ! cmp -s "$SRC/systemd/$u" "$UNITDIR/$u"; then
        echo "check-units: $UNITDIR/$u differs from $SRC/systemd/$u (stale build dir?)" >&2
        exit 1
    fi
done

status=0
# Documentation=man:... is looked up with man(1): point it at the staged pages.
if ! out=$(cd "$ROOT" && MANPATH="$ROOT/usr/share/man" systemd-analyze verify --root="$ROOT" \
        "$UNITDIR/outboxd.service" "$UNITDIR/outboxd.socket" \
        "$UNITDIR/outboxd-submission.socket" "$UNITDIR/outboxd-submissions.socket" 2>&1) || [ -n "$out" ]; then
    echo "check-units: systemd-analyze verify complained:" >&2
    echo "$out" >&2
    status=1
else
    echo "check-units: systemd-analyze verify: ok (outboxd.service, 3 socket units)"
fi

sec=$(systemd-analyze security --offline=yes --root="$ROOT" --no-pager "$UNITDIR/outboxd.service" 2>&1) || true
exposure=$(printf '%s\n' "$sec" | sed -n 's/.*Overall exposure level for outboxd.service: \([0-9.]*\).*/\1/p')
if [ -z "$exposure" ]; then
    echo "check-units: no exposure figure from systemd-analyze security:" >&2
    echo "$sec" >&2
    exit 1
fi
printf '%s\n' "$sec" | grep '✗' || true
echo "check-units: outboxd.service exposure $exposure (ceiling $MAX)"
if ! awk -v e="$exposure" -v m="$MAX" 'BEGIN { exit !(e <= m) }'; then
    echo "check-units: exposure $exposure is above $MAX" >&2
    status=1
fi
exit $status
