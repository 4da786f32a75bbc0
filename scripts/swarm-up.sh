#!/usr/bin/env bash
# Deploy vigil as a Docker Swarm stack (deploy/swarm/stack.yaml) and wait until it is healthy.
#
#   scripts/swarm-up.sh                 # swarm init if this engine is not in a swarm, build, deploy, wait
#   VIGIL_EEG_REPLICAS=3 scripts/swarm-up.sh
#   docker service scale vigil_eeg=4    # later: the gateway finds the new replica by DNS
#   docker stack rm vigil               # stop it (docker swarm leave --force undoes the init)
#
# Env: VIGIL_STACK (stack name, default vigil), VIGIL_SWARM_RESOLVE_IMAGE (never for local images,
# always with a registry prefix), VIGIL_SKIP_BUILD=1 (use existing images; on a
# multi-node swarm the images must come from a registry every node can pull from: set
# VIGIL_IMAGE_PREFIX), VIGIL_SWARM_ADVERTISE_ADDR (for `swarm init` on a host with several
# addresses; a lone node falls back to 127.0.0.1), VIGIL_SWARM_TIMEOUT (seconds, default 600),
# and the stack file's own knobs (VIGIL_<NAME>_REPLICAS, VIGIL_PORT, ...).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
STACK="${VIGIL_STACK:-vigil}"
TIMEOUT="${VIGIL_SWARM_TIMEOUT:-600}"
PORT="${VIGIL_PORT:-8765}"

log() { echo "[swarm-up] $*" >&2; }
die() { log "error: $*"; exit 1; }

setup_env="$(scripts/docker-setup.sh)" || die "scripts/docker-setup.sh failed"
eval "$setup_env"
DOCKER="${VIGIL_DOCKER:-docker}"

state="$("$DOCKER" info --format '{{.Swarm.LocalNodeState}}')"
if [ "$state" != "active" ]; then
    log "this engine is not in a swarm ($state): docker swarm init"
    if [ -n "${VIGIL_SWARM_ADVERTISE_ADDR:-}" ]; then
        "$DOCKER" swarm init --advertise-addr "$VIGIL_SWARM_ADVERTISE_ADDR" >/dev/null
    elif ! "$DOCKER" swarm init >/dev/null 2>&1; then
        log "no single address to advertise; a one-node swarm on 127.0.0.1"
        "$DOCKER" swarm init --advertise-addr 127.0.0.1 >/dev/null
    fi
fi

if [ "${VIGIL_SKIP_BUILD:-0}" != "1" ]; then
    scripts/build-images.sh
fi

# Local images (the default prefix) have no registry digest to record: do not ask a registry.
if [ -n "${VIGIL_IMAGE_PREFIX:-}" ]; then resolve="${VIGIL_SWARM_RESOLVE_IMAGE:-always}"; else resolve="${VIGIL_SWARM_RESOLVE_IMAGE:-never}"; fi
log "docker stack deploy $STACK"
"$DOCKER" stack deploy --prune --resolve-image "$resolve" -c deploy/swarm/stack.yaml "$STACK"

# Swarm counts a task as running only once its healthcheck passes: wait for N/N everywhere.
deadline=$((SECONDS + TIMEOUT))
while :; do
    lines="$("$DOCKER" service ls --filter "label=com.docker.stack.namespace=$STACK" --format '{{.Name}} {{.Replicas}}')"
    pending="$(awk '{split($2, r, "/"); if (r[1] != r[2]) print $1 " " $2}' <<<"$lines")"
    if [ -n "$lines" ] && [ -z "$pending" ]; then
        break
    fi
    [ "$SECONDS" -lt "$deadline" ] || {
        "$DOCKER" stack ps --no-trunc "$STACK" >&2 || true
        for service in $(awk '{print $1}' <<<"$pending"); do
            log "last log lines of $service:"
            "$DOCKER" service logs --no-trunc --tail 30 "$service" >&2 || true
        done
        die "not every service healthy after ${TIMEOUT}s: $pending"
    }
    sleep 2
done
log "services: $(tr '\n' ' ' <<<"$lines")"

# The gateway is ready when every required backend is connected.
while :; do
    if python3 - "$PORT" <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=2)
except Exception:
    sys.exit(1)
PY
    then
        break
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "gateway /readyz not 200 on 127.0.0.1:$PORT after ${TIMEOUT}s"
    sleep 1
done
log "vigil stack '$STACK' is up: ws://127.0.0.1:$PORT"
