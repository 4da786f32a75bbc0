#!/usr/bin/env bash
# Measure the service images and print the markdown table of docs/containers.md (paste it there).
#
#   scripts/measure-images.sh                  # every service: cold build, warm build, size, disk
#   scripts/measure-images.sh eeg main_backend # a subset
#   VIGIL_MEASURE_COLD=0 scripts/measure-images.sh   # skip the cold builds (warm + sizes only)
#
# cold = every layer rebuilt, as on a fresh host: the services are built in order, through
#        scripts/build-images.sh, on a throwaway copy of the base image (one tiny layer more, so no
#        cached layer matches) under the tag <tag>-cold, removed once measured. Like on a
#        fresh host, a later image reuses what an earlier one of the same run built: emotion finds
#        the torch layer fatigue built (`--no-cache` would build it twice and share nothing).
#        BuildKit's pip cache mount survives, so wheels downloaded once are not fetched again
#        (emptying it would need `docker builder prune`, which throws away every other build's cache
#        on the host): the cold times include installing, not downloading, torch.
# warm = a build on the real base with nothing changed (all layers cached): timed is the second of
#        two builds in a row, the first one brings the image up to date.
# size = `docker image inspect` .Size (uncompressed, including the base image's layers).
# disk = the stack's unique layers, each counted once (sizes from the engine's layer store; needs
#        read access to it, e.g. root): a layer two images share, such as the base or the torch
#        layer of fatigue and emotion, is stored once. Without that access: the sum of the image
#        sizes with only the base counted once (an upper bound).
# Build logs go to stderr; the table to stdout.
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

# Seconds one scripts/build-images.sh run takes for one service; extra env (KEY=VALUE ...) after $1.
build_seconds() {
    local name="$1" start
    shift
    start=$(date +%s.%N)
    env "$@" scripts/build-images.sh "$name" >/dev/null 2>"/tmp/vigil-measure-$name.log" ||
        { tail -n 30 "/tmp/vigil-measure-$name.log" >&2; echo "build of $name failed" >&2; exit 1; }
    python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.0f}')" "$start" "$(date +%s.%N)"
}

human() { python3 -c "import sys; b=int(sys.argv[1]); print(f'{b/1e9:.2f} GB' if b >= 1e9 else f'{b/1e6:.0f} MB')" "$1"; }

# "<unique bytes> <bytes in layers more than one image uses, beyond the first image's own>" for the
# images given (the first one: the base). Layers are told apart by chain id (the same diff ids on
# the same parent chain are the same stored layer); sizes come from the layer store. Empty output
# when the layer store cannot be read.
layer_bytes() {
    python3 - "$VIGIL_DOCKER" "$@" <<'PY' 2>/dev/null || true
import hashlib, json, subprocess, sys
from pathlib import Path

docker, base, *images = sys.argv[1:]
root, driver = subprocess.run([docker, "info", "-f", "{{.DockerRootDir}} {{.Driver}}"], capture_output=True,
                              text=True, check=True).stdout.split()
store = Path(root) / "image" / driver / "layerdb" / "sha256"

def chains(image):
    out = subprocess.run([docker, "image", "inspect", "-f", "{{json .RootFS.Layers}}", image], capture_output=True,
                         text=True, check=True).stdout
    chain = None
    for diff in json.loads(out):
        chain = diff if chain is None else "sha256:" + hashlib.sha256(f"{chain} {diff}".encode()).hexdigest()
        yield chain

size = {}
users = {}
base_chains = set(chains(base))
for image in [base, *images]:
    for chain in chains(image):
        size[chain] = int((store / chain.split(":", 1)[1] / "size").read_text())
        users[chain] = users.get(chain, 0) + (image != base)
shared = sum(size[c] for c, n in users.items() if n > 1 and c not in base_chains)
print(sum(size.values()), shared)
PY
}

base_bytes="$("$VIGIL_DOCKER" image inspect -f '{{.Size}}' "$VIGIL_BASE_IMAGE")"
declare -A cold_s=()
cold_total="-"
cold_disk=""
if [ "$COLD" = 1 ]; then
    cold_base="${VIGIL_BASE_IMAGE%%:*}:measure-cold-$$"
    # A layer of its own (a file with a nonce): BuildKit keys a base image by its layers' chain id,
    # so a LABEL alone would still match every cached layer.
    printf 'FROM %s\nRUN echo "%s" > /.vigil-measure-cold\n' "$VIGIL_BASE_IMAGE" "$(date -u +%s%N)" |
        "$VIGIL_DOCKER" build -q -t "$cold_base" - >/dev/null
    cold_images=()
    cleanup_cold() {
        "$VIGIL_DOCKER" rmi "${cold_images[@]}" "$cold_base" >/dev/null 2>&1 || true
    }
    trap cleanup_cold EXIT
    total=0
    for name in "${services[@]}"; do
        echo "[measure] cold $name" >&2
        cold_s[$name]="$(build_seconds "$name" VIGIL_BASE_IMAGE="$cold_base" VIGIL_IMAGE_TAG="$TAG-cold")"
        cold_images+=("${PREFIX}${name}:${TAG}-cold")
        total=$((total + cold_s[$name]))
    done
    cold_total="$total s"
    read -r cold_disk _ <<<"$(layer_bytes "$cold_base" "${cold_images[@]}")" || true
    cleanup_cold
    trap - EXIT
fi

rows=()
images=()
sum_bytes=0
for name in "${services[@]}"; do
    image="${PREFIX}${name}:${TAG}"
    echo "[measure] warm $name" >&2
    build_seconds "$name" >/dev/null # brings the tag up to date (a full build when it was stale)
    warm="$(build_seconds "$name") s"
    cold="-"
    [ -n "${cold_s[$name]:-}" ] && cold="${cold_s[$name]} s"
    bytes="$("$VIGIL_DOCKER" image inspect -f '{{.Size}}' "$image")"
    sum_bytes=$((sum_bytes + bytes - base_bytes))
    images+=("$image")
    rows+=("| $image | $cold | $warm | $(human "$bytes") |")
done
sum_bytes=$((sum_bytes + base_bytes))
disk=""
shared=""
read -r disk shared <<<"$(layer_bytes "$VIGIL_BASE_IMAGE" "${images[@]}")" || true

echo "Measured $(date -u +%Y-%m-%d) by scripts/measure-images.sh on $(nproc) cores, base image"
echo "\`$VIGIL_BASE_IMAGE\` ($(human "$base_bytes")), Docker $("$VIGIL_DOCKER" version -f '{{.Server.Version}}' 2>/dev/null)."
echo
echo "| image | cold build | warm build | size |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
[ "$COLD" = 1 ] && echo "Cold build of these ${#services[@]} images in a row: $cold_total."
if [ -n "$disk" ]; then
    echo "Stack on disk (unique layers, each counted once): $(human "$disk"); in layers that more than one"
    echo "image uses, beyond the base: $(human "$shared")."
    [ -n "$cold_disk" ] && echo "The cold-built images took $(human "$cold_disk") (unique layers)."
else
    echo "Stack on disk (base image counted once; layer store not readable): $(human "$sum_bytes")."
fi
