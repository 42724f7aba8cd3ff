#!/usr/bin/env bash
# Create or refresh .venv for ./demo, ./test and ./bench.
# Usage: scripts/venv.sh EXTRAS [--m2crypto]
#   EXTRAS is the comma-separated list of extras to install with the project (e.g. "test,dev").
# Idempotent: a stamp file records what was installed; when nothing changed this returns at once.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
extras="${1:-}"
want_m2=0
[ "${2:-}" = "--m2crypto" ] && want_m2=1

log() { printf '[venv] %s\n' "$*" >&2; }

find_python() {
    for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "error: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

venv="$here/.venv"
digest="$( (cat pyproject.toml; echo "extras=$extras m2=$want_m2") | sha256sum | cut -c1-16)"
# One stamp per (pyproject, extras) pair, so ./demo and ./test do not undo each other.
stamp="$venv/.rpcframework-stamp-$digest"

if [ ! -x "$venv/bin/python" ]; then
    py="$(find_python)"
    log "creating $venv with $("$py" --version)"
    "$py" -m venv "$venv"
fi
export PATH="$venv/bin:$PATH"

if [ -f "$stamp" ]; then
    exit 0
fi

# Union of every set of extras installed so far, so that ./demo after ./test does not remove anything.
installed_extras="$( [ -f "$venv/.rpcframework-extras" ] && cat "$venv/.rpcframework-extras" || true)"
all_extras="$(printf '%s\n' "$installed_extras" "$extras" | tr ',' '\n' | sed '/^$/d' | sort -u | paste -sd, -)"

log "installing rpcframework[${all_extras}] (editable)"
python -m pip install --quiet --upgrade pip setuptools wheel
if [ -n "$all_extras" ]; then
    python -m pip install --quiet -e ".[${all_extras}]" 2>&1 | { grep -v "^WARNING: Location" >&2 || true; }
else
    python -m pip install --quiet -e .
fi
printf '%s\n' "$all_extras" >"$venv/.rpcframework-extras"

if [ "$want_m2" = 1 ] && ! python -c 'import M2Crypto' 2>/dev/null; then
    if [ ! -f /usr/include/openssl/ssl.h ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            log "installing libssl-dev (OpenSSL headers, needed to build M2Crypto)"
            DEBIAN_FRONTEND=noninteractive apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl-dev >/dev/null
        else
            echo "error: OpenSSL headers missing; install libssl-dev (apt-get install libssl-dev) and rerun" >&2
            exit 1
        fi
    fi
    log "building M2Crypto from source (a few minutes, once)"
    python -m pip install --quiet swig setuptools wheel
    python -m pip install --quiet --no-build-isolation "M2Crypto>=0.50"
fi

echo "$digest" >"$stamp"
log "ready"
