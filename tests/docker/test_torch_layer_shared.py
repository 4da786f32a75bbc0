"""The fatigue and emotion images share the torch layer: stored once on disk, pulled once.

Both Dockerfiles start with the same `torch` stage (tests/test_torch_layer.py keeps the text
identical); here the built images prove BuildKit really reused it: their RootFS layer lists start
with the same layers, and those are exactly the torch stage's (built alone with `--target torch`,
all from cache), which holds the big install (torch of the lock's version, importable).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid

from dockerlib import BUILD_TIMEOUT_S, REPO, run_docker

TORCH_LOCK = REPO / "services" / "fatigue" / "requirements-torch.txt"
# The torch stage over the base: PyPI's CUDA build is ~5 GB, the CPU wheel (TORCH_INDEX_URL) ~1 GB.
MIN_TORCH_LAYER_BYTES = 500_000_000


def layers(docker_env: dict[str, str], image: str) -> list[str]:
    return json.loads(run_docker(docker_env, "image", "inspect", "-f", "{{json .RootFS.Layers}}", image))


def image_bytes(docker_env: dict[str, str], image: str) -> int:
    return int(run_docker(docker_env, "image", "inspect", "-f", "{{.Size}}", image))


def build_torch_stage(docker_env: dict[str, str], tag: str) -> str:
    """services/fatigue/Dockerfile's `torch` stage as an image of its own (from the cache the image
    builds left; the same build args through scripts/build-images.sh)."""
    env = {
        **os.environ,
        **docker_env,
        "DOCKER_BUILDKIT": "1",
        "VIGIL_IMAGE_TAG": tag,
        "VIGIL_BUILD_ARGS": "--target torch",
    }
    proc = subprocess.run(
        [str(REPO / "scripts" / "build-images.sh"), "fatigue"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )
    assert proc.returncode == 0, f"torch stage build failed:\n{proc.stderr[-4000:]}"
    return f"{os.environ.get('VIGIL_IMAGE_PREFIX', 'vigil/')}fatigue:{tag}"


def test_fatigue_and_emotion_share_the_torch_layer(docker_env, service_image):
    fatigue, emotion = service_image("fatigue"), service_image("emotion")
    base = layers(docker_env, docker_env["VIGIL_BASE_IMAGE"])
    torch_stage = build_torch_stage(docker_env, f"torchstage-{uuid.uuid4().hex[:8]}")
    try:
        stage = layers(docker_env, torch_stage)
        fatigue_layers, emotion_layers = layers(docker_env, fatigue), layers(docker_env, emotion)
        common = 0
        while (
            common < min(len(fatigue_layers), len(emotion_layers)) and fatigue_layers[common] == emotion_layers[common]
        ):
            common += 1
        assert stage[: len(base)] == base, "the torch stage does not start from the base image"
        assert len(stage) > len(base), "the torch stage added no layer"
        assert fatigue_layers[: len(stage)] == stage, "fatigue does not start with the torch stage's layers"
        assert emotion_layers[: len(stage)] == stage, "emotion does not start with the torch stage's layers"
        assert common >= len(stage), f"shared prefix of {common} layers, the torch stage has {len(stage)}"
        # The shared prefix is the big part of both images.
        torch_bytes = image_bytes(docker_env, torch_stage) - image_bytes(docker_env, docker_env["VIGIL_BASE_IMAGE"])
        assert torch_bytes > MIN_TORCH_LAYER_BYTES, f"torch stage adds only {torch_bytes} bytes"
        # ... and it is the lock's torch.
        (pinned,) = re.findall(r"^torch==([^ ;\\]+)", TORCH_LOCK.read_text(), flags=re.M)
        version = run_docker(
            docker_env,
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "/opt/venv/bin/python",
            torch_stage,
            "-c",
            "import torch; print(torch.__version__)",
            timeout=300,
        ).strip()
        assert version.split("+")[0] == pinned, f"torch {version} in the shared layer, the lock pins {pinned}"
    finally:
        run_docker(docker_env, "rmi", torch_stage, check=False)
