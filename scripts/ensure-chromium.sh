#!/usr/bin/env bash
# Make sure headless Chromium is installed for the portal's browser test (tests/integration/examples/test_portal.py).
# Installs Debian's `chromium` package with apt-get when it is missing and we run as root; otherwise says why it
# cannot and returns 0, so the rest of the suite still runs (the browser test then fails with a clear message:
# it is never skipped). Set RPCFRAMEWORK_CHROMIUM=/path/to/chromium to use another binary.
set -euo pipefail

log() { printf '[chromium] %s\n' "$*" >&2; }

if [ -n "${RPCFRAMEWORK_CHROMIUM:-}" ] && [ -x "${RPCFRAMEWORK_CHROMIUM}" ]; then
    exit 0
fi
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    log "chromium is missing and this is not root: run 'sudo apt-get install -y chromium' (Debian/Ubuntu) or set"
    log "RPCFRAMEWORK_CHROMIUM to a Chromium binary; the portal's browser test will fail until then"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    log "chromium is missing and there is no apt-get here: install Chromium with this system's package manager"
    log "or set RPCFRAMEWORK_CHROMIUM to a Chromium binary; the portal's browser test will fail until then"
    exit 0
fi
log "installing chromium with apt-get (headless browser for the portal test; once)"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq chromium >/dev/null 2>&1; then
    # A fresh machine may have no package lists yet.
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null ||
        log "apt-get could not install chromium (see above); the portal's browser test will fail until it is installed"
fi
command -v chromium >/dev/null 2>&1 && log "installed: $(chromium --version 2>/dev/null || echo chromium)"
exit 0
