#!/bin/sh
# Installs everything outbox needs to build, run and test, from Debian's
# packages. Idempotent; run as root (or through sudo).
set -eu
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
# Postfix ships smtp-source/smtp-sink (test peers and the benchmark); preseed
# "No configuration" so installing it configures and starts nothing.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
# prometheus: promtool, which checks and tests etc/outbox-alerts.yml (ctest alerts_promtool).
# libhiredis-dev: the fleet ledger's Redis client; redis-server: its tests.
PKGS="build-essential cmake pkg-config git ca-certificates openssl
 libuv1-dev libssl-dev libsqlite3-dev sqlite3 libspdlog-dev libfmt-dev doctest-dev
 libtomlplusplus-dev libcli11-dev nlohmann-json3-dev libsystemd-dev libcurl4-openssl-dev libhiredis-dev
 python3 python3-aiosmtpd python3-seccomp systemd zsh swaks postfix clang libclang-rt-14-dev
 dpkg-dev prometheus redis-server"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq || true
  $SUDO apt-get install -y -qq $missing
fi
