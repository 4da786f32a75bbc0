#!/usr/bin/env bash
# Build the vigil service images (context = repo root), one per services/<name>/Dockerfile: the same
# images and tags as compose.yaml's build sections, plus the host CA as a BuildKit secret (pip behind
# a TLS-intercepting proxy) and local wheels, which a plain compose build cannot pass.
#
#   scripts/build-images.sh                     # every service that has a Dockerfile
#   scripts/build-images.sh eeg main_backend    # a subset
#
# Env: VIGIL_IMAGE_PREFIX (default vigil/), VIGIL_IMAGE_TAG (default dev) -> vigil/<name>:dev;
#      VIGIL_BASE_IMAGE (default: whatever scripts/docker-setup.sh finds or builds);
#      VIGIL_PIP_CA (default /etc/ssl/certs/ca-certificates.crt, passed as BuildKit secret pip_ca
#      when the file exists, for pip behind a TLS-intercepting proxy; never stored in an image);
#      VIGIL_BUILD_ARGS (extra `docker build` flags, e.g. --no-cache);
#      VIGIL_TORCH_INDEX_URL (default empty): build arg TORCH_INDEX_URL of the torch images' shared
#      torch layer (the `torch` stage of their Dockerfiles): empty = PyPI's CUDA build, hash-pinned; an
#      index such as https://download.pytorch.org/whl/cpu gives a CPU-only host the smaller CPU wheel
#      of the same version, without hash pinning for torch. Passed only when set;
#      VIGIL_AOT_CPU_CAPABILITY (default empty): build arg AOT_CPU_CAPABILITY of the fatigue image
#      (the CPU extension its compiled attention mesh targets; empty = this machine's best, AVX2 =
#      any AVX2 CPU). Passed only when set;
#      VIGIL_WHEELHOUSE (default /opt/wheels when it exists): local wheels staged into .cache/wheels
#      in the build context, which Dockerfiles may bind-mount for `pip --find-links` (e.g. a CPU torch
#      wheel where the PyTorch index is unreachable). Empty directory otherwise.
# Prints build time and image size per service, then a summary.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

# Engine up + base image present (quick when already done); exports VIGIL_DOCKER, VIGIL_BASE_IMAGE.
# (Assigned first: `eval "$(...)"` would swallow the script's failure.)
setup_env="$(scripts/docker-setup.sh)"
eval "$setup_env"

PREFIX="${VIGIL_IMAGE_PREFIX:-vigil/}"
TAG="${VIGIL_IMAGE_TAG:-dev}"
PIP_CA="${VIGIL_PIP_CA:-/etc/ssl/certs/ca-certificates.crt}"
VCS_REF="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
export DOCKER_BUILDKIT=1

log() { echo "[build-images] $*" >&2; }

if [ "$#" -gt 0 ]; then
    services=("$@")
else
    services=()
    for f in services/*/Dockerfile; do
        [ -e "$f" ] && services+=("$(basename "$(dirname "$f")")")
    done
fi
[ "${#services[@]}" -gt 0 ] || { log "no services/*/Dockerfile found"; exit 1; }

# Stage local wheels (hard links when possible: no copy of a 200 MB wheel). The directory always
# exists so a Dockerfile's `--mount=type=bind,source=.cache/wheels` never fails.
WHEELHOUSE="${VIGIL_WHEELHOUSE:-/opt/wheels}"
mkdir -p .cache/wheels
if [ -d "$WHEELHOUSE" ]; then
    for whl in "$WHEELHOUSE"/*.whl; do
        [ -e "$whl" ] || continue
        dest=".cache/wheels/$(basename "$whl")"
        [ -e "$dest" ] || ln "$whl" "$dest" 2>/dev/null || cp "$whl" "$dest"
    done
fi

secret_args=()
if [ -s "$PIP_CA" ]; then
    secret_args=(--secret "id=pip_ca,src=$PIP_CA")
fi
# Only when set: the default build stays byte-for-byte what compose builds (same layer cache keys).
torch_args=()
if [ -n "${VIGIL_TORCH_INDEX_URL:-}" ]; then
    torch_args=(--build-arg "TORCH_INDEX_URL=$VIGIL_TORCH_INDEX_URL")
fi
if [ -n "${VIGIL_AOT_CPU_CAPABILITY:-}" ]; then
    torch_args+=(--build-arg "AOT_CPU_CAPABILITY=$VIGIL_AOT_CPU_CAPABILITY")
fi

summary=()
for name in "${services[@]}"; do
    dockerfile="services/$name/Dockerfile"
    [ -f "$dockerfile" ] || { log "no $dockerfile"; exit 1; }
    image="${PREFIX}${name}:${TAG}"
    log "building $image from $dockerfile (base $VIGIL_BASE_IMAGE)"
    old_id="$("$VIGIL_DOCKER" image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)"
    start=$(date +%s)
    # shellcheck disable=SC2086  # VIGIL_BUILD_ARGS is a list of flags on purpose
    "$VIGIL_DOCKER" build --progress=plain \
        -f "$dockerfile" -t "$image" \
        --build-arg "BASE_IMAGE=$VIGIL_BASE_IMAGE" \
        --build-arg "VCS_REF=$VCS_REF" \
        "${secret_args[@]}" "${torch_args[@]}" ${VIGIL_BUILD_ARGS:-} \
        . >&2
    secs=$(($(date +%s) - start))
    # The image this tag pointed to before is now untagged: drop it unless a container uses it.
    new_id="$("$VIGIL_DOCKER" image inspect -f '{{.Id}}' "$image")"
    if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ] &&
        [ -z "$("$VIGIL_DOCKER" image inspect -f '{{join .RepoTags ""}}' "$old_id" 2>/dev/null)" ]; then
        "$VIGIL_DOCKER" rmi "$old_id" >/dev/null 2>&1 || true
    fi
    size_bytes="$("$VIGIL_DOCKER" image inspect -f '{{.Size}}' "$image")"
    size_mb=$((size_bytes / 1000000))
    log "built $image in ${secs}s, ${size_mb} MB"
    summary+=("$(printf '%-28s %6ss %7s MB' "$image" "$secs" "$size_mb")")
done

log "summary (image, build time, size):"
for line in "${summary[@]}"; do echo "  $line" >&2; done
