#!/usr/bin/env bash
# Installs the system packages shoal's local stack needs (PostgreSQL, Redis, wrk), with apt,
# only when they are missing. On systems without apt it says what to install and stops.
set -euo pipefail

have_pg() { command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }
missing=()
have_pg || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "shoal needs: ${missing[*]}. This system has no apt-get: install them with its package manager." >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing with apt: ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts packaged services; shoal runs its own, so stop the system ones if they started.
for svc in postgresql redis-server; do
  $sudo service "$svc" stop >/dev/null 2>&1 || true
done
