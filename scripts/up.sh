#!/usr/bin/env bash
# Run the vigil stack: Docker engine + base image (one-time, scripts/docker-setup.sh), the service
# images (scripts/build-images.sh), then `docker compose up -d --no-build` and a wait until the main
# backend answers on 127.0.0.1:8765. This is the offline / TLS-proxy path: build-images.sh hands
# pip the host's CA as a BuildKit secret. On an ordinary Docker host `docker compose up --build`
# does the same from compose.yaml's build sections.
#
#   scripts/up.sh            # CPU
#   scripts/up.sh --gpu      # adds compose.gpu.yaml (NVIDIA container toolkit needed)
#   scripts/up.sh --no-build # reuse the images already built
# Stop with:  docker compose down   (docker-compose down on compose 1.29)
set -euo pipefail
cd "$(dirname "$0")/.."

files=(-f compose.yaml)
build=1
for arg in "$@"; do
  case "$arg" in
    --gpu) files+=(-f compose.gpu.yaml) ;;
    --no-build) build=0 ;;
    *) echo "usage: scripts/up.sh [--gpu] [--no-build]" >&2; exit 2 ;;
  esac
done

setup_env=$(scripts/docker-setup.sh)  # fails the script if setup fails (eval "$(...)" would not)
eval "$setup_env"  # exports VIGIL_DOCKER, VIGIL_COMPOSE, VIGIL_BASE_IMAGE
[ "$build" = 1 ] && scripts/build-images.sh
# shellcheck disable=SC2086  # VIGIL_COMPOSE may be "docker compose"
# --no-build: the images are build-images.sh's (same tags as compose.yaml's `image:`).
$VIGIL_COMPOSE "${files[@]}" up -d --no-build

port="${VIGIL_PORT:-8765}"
echo "waiting until the main backend on 127.0.0.1:$port reports every backend healthy ..." >&2
for _ in $(seq 1 120); do
  if body=$(python3 - "$port" <<'PY' 2>/dev/null
import json, sys, urllib.request
port = sys.argv[1]
with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
    body = json.load(r)
print(json.dumps(body))
sys.exit(0 if body.get("overall") == "healthy" else 1)  # every enabled backend loaded and connected
PY
  ); then
    echo "stack healthy: $body" >&2
    echo "connect clients to ws://127.0.0.1:$port ; per-backend state: send {\"type\":\"health_check\"}" >&2
    # shellcheck disable=SC2086
    $VIGIL_COMPOSE "${files[@]}" ps >&2
    exit 0
  fi
  sleep 2
done
echo "stack not healthy within 240 s; state: send {\"type\":\"health_check\"} to ws://127.0.0.1:$port or see: $VIGIL_COMPOSE logs" >&2
exit 1
