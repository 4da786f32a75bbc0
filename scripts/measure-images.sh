#!/usr/bin/env bash
# Measure the service images and print the markdown table of docs/containers.md (paste it there).
#
#   scripts/measure-images.sh                  # every service: cold build, warm build, size
#   scripts/measure-images.sh eeg main_backend # a subset
#   VIGIL_MEASURE_COLD=0 scripts/measure-images.sh   # skip the cold builds (warm + sizes only)
#
# cold = `--no-cache` through scripts/build-images.sh: every layer is rebuilt, but BuildKit's pip
#        cache mount survives, so wheels already downloaded once are not fetched again (emptying it
#        would need `docker builder prune`, which throws away every other build's cache on the host);
# warm = the same build again with nothing changed (all layers cached).
# size = `docker image inspect` .Size (uncompressed, including the base image's layers).
# The stack's disk use counts the shared base image once. Build logs go to stderr; the table to stdout.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
setup_env="$(scripts/docker-setup.sh)"
eval "$setup_env"

PREFIX="${VIGIL_IMAGE_PREFIX:-vigil/}"
TAG="${VIGIL_IMAGE_TAG:-dev}"
COLD="${VIGIL_MEASURE_COLD:-1}"

if [ "$#" -gt 0 ]; then
    services=("$@")
else
    services=()
    for f in services/*/Dockerfile; do services+=("$(basename "$(dirname "$f")")"); done
fi

# Seconds one scripts/build-images.sh run takes for one service (extra docker build flags in $2).
build_seconds() {
    local start
    start=$(date +%s.%N)
    VIGIL_BUILD_ARGS="$2" scripts/build-images.sh "$1" >/dev/null 2>"/tmp/vigil-measure-$1.log" ||
        { tail -n 30 "/tmp/vigil-measure-$1.log" >&2; echo "build of $1 failed" >&2; exit 1; }
    python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.0f} s')" "$start" "$(date +%s.%N)"
}

human() { python3 -c "import sys; b=int(sys.argv[1]); print(f'{b/1e9:.2f} GB' if b >= 1e9 else f'{b/1e6:.0f} MB')" "$1"; }

base_bytes="$("$VIGIL_DOCKER" image inspect -f '{{.Size}}' "$VIGIL_BASE_IMAGE")"
rows=()
total=0
for name in "${services[@]}"; do
    image="${PREFIX}${name}:${TAG}"
    echo "[measure] $image" >&2
    cold="-"
    [ "$COLD" = 1 ] && cold="$(build_seconds "$name" --no-cache)"
    warm="$(build_seconds "$name" "")"
    bytes="$("$VIGIL_DOCKER" image inspect -f '{{.Size}}' "$image")"
    total=$((total + bytes - base_bytes))
    rows+=("| $image | $cold | $warm | $(human "$bytes") |")
done
total=$((total + base_bytes))

echo "Measured $(date -u +%Y-%m-%d) by scripts/measure-images.sh on $(nproc) cores, base image"
echo "\`$VIGIL_BASE_IMAGE\` ($(human "$base_bytes")), Docker $("$VIGIL_DOCKER" version -f '{{.Server.Version}}' 2>/dev/null)."
echo
echo "| image | cold build | warm build | size |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "Stack on disk (base image counted once): $(human "$total")."
