#!/usr/bin/env bash
# Make a working Docker engine for vigil, idempotently.
#
#   scripts/docker-setup.sh            # logs to stderr, prints KEY=VALUE lines on stdout
#   eval "$(scripts/docker-setup.sh)"  # exports VIGIL_DOCKER, VIGIL_COMPOSE, VIGIL_BASE_IMAGE
#
# Steps, each skipped when already satisfied:
#   1. install Debian docker.io / docker-compose when no engine or compose exists (root + apt only);
#   2. start dockerd in the background when the socket does not answer, wait for `docker info`;
#   3. make sure a Python 3.11 base image exists: the public python:3.11-slim-bookworm if it is
#      present or pullable, else a local equivalent built with debootstrap and `docker import`,
#      which also gets this host's CA bundle (VIGIL_PIP_CA) and PIP_CERT, so compose-driven builds
#      work behind a TLS proxy (the local base and images built on it are never to be published).
# On a laptop with a normal Docker install only step 3's pull happens.
set -euo pipefail

PUBLIC_BASE="${VIGIL_PUBLIC_BASE_IMAGE:-python:3.11-slim-bookworm}"
LOCAL_BASE="${VIGIL_LOCAL_BASE_IMAGE:-vigil/python-base:3.11-bookworm}"
DOCKERD_LOG="${VIGIL_DOCKERD_LOG:-/var/log/vigil-dockerd.log}"
DEBIAN_MIRROR="${VIGIL_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PULL_TIMEOUT="${VIGIL_PULL_TIMEOUT:-120}"
HOST_CA="${VIGIL_PIP_CA:-/etc/ssl/certs/ca-certificates.crt}"

log() { echo "[docker-setup] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }

# GNU timeout where it exists (macOS has none by default).
with_timeout() {
    local secs="$1"
    shift
    if command -v timeout >/dev/null; then timeout "$secs" "$@"; else "$@"; fi
}

apt_install() {
    is_root || die "need root to apt-get install $*"
    command -v apt-get >/dev/null || die "no apt-get: install $* by hand"
    local aptlog=/tmp/vigil-apt.log
    log "installing $* (apt, log: $aptlog)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -q && apt-get install -y -q --no-install-recommends "$@"; } >>"$aptlog" 2>&1 ||
        { tail -n 30 "$aptlog" >&2; die "apt-get install $* failed"; }
}

# The Debian client at /usr/bin/docker has BuildKit built in; a bare static client earlier on
# PATH (no buildx plugin) cannot run `DOCKER_BUILDKIT=1 docker build`, so prefer the former.
pick_docker() {
    if [ -n "${VIGIL_DOCKER:-}" ]; then echo "$VIGIL_DOCKER"; return; fi
    if [ -x /usr/bin/docker ]; then echo /usr/bin/docker; return; fi
    command -v docker || true
}

pick_compose() {
    if [ -n "${VIGIL_COMPOSE:-}" ]; then echo "$VIGIL_COMPOSE"; return; fi
    if "$DOCKER" compose version >/dev/null 2>&1; then echo "$DOCKER compose"; return; fi
    if command -v docker-compose >/dev/null; then command -v docker-compose; return; fi
    true
}

engine_answers() { with_timeout 20 "$DOCKER" info >/dev/null 2>&1; }

# --- 1. packages -------------------------------------------------------------------------
DOCKER="$(pick_docker)"
if [ -z "$DOCKER" ] || { ! engine_answers && ! command -v dockerd >/dev/null; }; then
    # No engine anywhere. Non-root (a laptop with Docker Desktop stopped): say so, install nothing.
    is_root || die "no reachable Docker engine: start Docker (or run as root to install docker.io)"
    apt_install docker.io
    DOCKER="$(pick_docker)"
fi
[ -n "$DOCKER" ] || die "no docker client after install"
COMPOSE="$(pick_compose)"
if [ -z "$COMPOSE" ]; then
    apt_install docker-compose
    COMPOSE="$(pick_compose)"
fi
[ -n "$COMPOSE" ] || die "no docker compose after install"

# --- 2. engine ---------------------------------------------------------------------------
if engine_answers; then
    log "engine answers ($DOCKER)"
else
    is_root || die "Docker engine not reachable as $(id -un): start Docker, or join the docker group, or run as root"
    command -v dockerd >/dev/null || die "no dockerd"
    # containerd is started by dockerd itself when not running as a service.
    log "starting dockerd (log: $DOCKERD_LOG)"
    mkdir -p "$(dirname "$DOCKERD_LOG")"
    # setsid + nohup: the daemon must outlive this script and the shell that ran it.
    setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
    dockerd_pid=$!
    for _ in $(seq 1 60); do
        engine_answers && break
        kill -0 "$dockerd_pid" 2>/dev/null || break # exited: no point waiting
        sleep 1
    done
    engine_answers || { tail -n 30 "$DOCKERD_LOG" >&2; die "dockerd did not come up (log: $DOCKERD_LOG)"; }
    log "dockerd up"
fi

# --- 3. base image -----------------------------------------------------------------------
have_image() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

build_local_base() {
    command -v debootstrap >/dev/null || apt_install debootstrap
    is_root || die "debootstrap needs root"
    local root
    root="$(mktemp -d /tmp/vigil-base.XXXXXX)"
    trap 'rm -rf "$root"' EXIT
    log "no registry: building $LOCAL_BASE with debootstrap (about a minute)"
    # minbase = Priority: required (+apt): has passwd/useradd; add Python and CA certs.
    local dblog=/tmp/vigil-debootstrap.log
    debootstrap --variant=minbase \
        --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$root" "$DEBIAN_MIRROR" >"$dblog" 2>&1 ||
        { tail -n 30 "$dblog" >&2; die "debootstrap failed (log: $dblog)"; }
    # Trim what a runtime image never needs (apt lists, docs, man pages, locales).
    chroot "$root" apt-get clean
    rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
        "$root"/usr/share/locale/* "$root"/var/cache/debconf/*-old "$root"/var/log/*.log
    tar --numeric-owner -C "$root" -c . | "$DOCKER" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        --message "debootstrap bookworm minbase + python3 (vigil local base)" \
        - "$LOCAL_BASE" >&2
    rm -rf "$root"
    trap - EXIT
}

if [ -n "${VIGIL_BASE_IMAGE:-}" ]; then
    BASE="$VIGIL_BASE_IMAGE"
    have_image "$BASE" || "$DOCKER" pull "$BASE" >&2 || die "base image $BASE not available"
elif have_image "$PUBLIC_BASE"; then
    BASE="$PUBLIC_BASE"
elif have_image "$LOCAL_BASE"; then
    BASE="$LOCAL_BASE"
elif with_timeout "$PULL_TIMEOUT" "$DOCKER" pull "$PUBLIC_BASE" >&2; then
    BASE="$PUBLIC_BASE"
else
    log "pull of $PUBLIC_BASE failed"
    build_local_base
    BASE="$LOCAL_BASE"
fi
# The local base also carries this host's trust store (PIP_CERT points pip at it), so that a plain
# compose-driven build (`docker compose build`, which cannot pass build-images.sh's BuildKit secret on
# compose 1.29) reaches PyPI through a TLS-intercepting proxy. Only the local base gets it: it exists
# only where the public python image cannot be pulled, and images built on it are local-only (never
# push them; published images are built on the public base, which carries no host CA).
add_host_trust() {
    [ -s "$HOST_CA" ] || return 0
    local sum current ctx
    sum="$(sha256sum "$HOST_CA" | cut -d' ' -f1)"
    current="$("$DOCKER" image inspect -f '{{index .Config.Labels "vigil.host-ca-sha256"}}' "$LOCAL_BASE" 2>/dev/null || true)"
    [ "$current" = "$sum" ] && return 0
    log "adding this host's CA bundle ($HOST_CA) to $LOCAL_BASE (local-only image)"
    ctx="$(mktemp -d /tmp/vigil-base-ca.XXXXXX)"
    cp "$HOST_CA" "$ctx/ca-certificates.crt"
    printf '%s\n' "FROM $LOCAL_BASE" \
        "COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt" \
        "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt" \
        "LABEL vigil.host-ca-sha256=$sum vigil.local-only=true" >"$ctx/Dockerfile"
    DOCKER_BUILDKIT=1 "$DOCKER" build -q -t "$LOCAL_BASE" "$ctx" >&2 || { rm -rf "$ctx"; die "could not add the host CA to $LOCAL_BASE"; }
    rm -rf "$ctx"
}
[ "$BASE" = "$LOCAL_BASE" ] && add_host_trust
log "base image: $BASE"

# %q quoting: safe for `eval`, even for "docker compose" (two words).
printf 'VIGIL_DOCKER=%q\n' "$DOCKER"
printf 'VIGIL_COMPOSE=%q\n' "$COMPOSE"
printf 'VIGIL_BASE_IMAGE=%q\n' "$BASE"
echo "DOCKER_BUILDKIT=1"
echo "export VIGIL_DOCKER VIGIL_COMPOSE VIGIL_BASE_IMAGE DOCKER_BUILDKIT"
