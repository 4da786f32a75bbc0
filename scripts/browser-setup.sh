#!/usr/bin/env bash
# Headless Chromium + chromedriver from Debian's packages for the dashboard's browser test.
# Idempotent: installs only what is missing. Needs root (apt-get), like docker-setup.sh.
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)

if [ ${#missing[@]} -eq 0 ]; then
    echo "browser-setup: chromium and chromedriver present ($(chromium --version 2>/dev/null || true))"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "browser-setup: need root to apt-get install ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# apt's lists may be missing or stale in a fresh container; retry install once after an update.
if ! apt-get install -y --no-install-recommends "${missing[@]}"; then
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
fi
echo "browser-setup: installed ${missing[*]} ($(chromium --version 2>/dev/null || true))"
