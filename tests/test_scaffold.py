"""scripts/new-backend.py: the scaffold in a temporary copy of the repo, its tests, its image, its refusals."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
NAME = "probe_model"
PORT = 8779


def _copy_repo(dest: Path) -> Path:
    """The tracked files (as in a fresh clone), without the venv or caches."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def _env() -> dict[str, str]:
    # uv and ruff of the dev venv (the copy has no .venv): on PATH.
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def _scaffold(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "scripts/new-backend.py", *args],
        cwd=root,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory) -> Path:
    root = _copy_repo(tmp_path_factory.mktemp("repo"))
    proc = _scaffold(root, NAME, "--port", str(PORT))
    assert proc.returncode == 0, proc.stderr
    return root


def test_creates_the_service_tests_config_and_compose_entry(scaffolded):
    service = scaffolded / "services" / NAME
    for rel in ("main.py", "Dockerfile", "README.md", "requirements.in", "requirements.txt", "model/weights.json"):
        assert (service / rel).is_file(), rel
    for rel in ("backend.py", "settings.py", "model.py"):
        assert (service / f"vigil_{NAME}" / rel).is_file(), rel
    assert "class ProbeModelBackend(BaseModelBackend)" in (service / f"vigil_{NAME}" / "backend.py").read_text()
    assert "--hash=sha256:" in (service / "requirements.txt").read_text()  # a hashed lock, like the others
    assert f"EXPOSE {PORT}" in (service / "Dockerfile").read_text()

    models = yaml.safe_load((scaffolded / "config" / "models.yaml").read_text())["model_backends"]
    assert models[NAME]["port"] == PORT and models[NAME]["enabled"] is False
    assert set(models) >= {"fatigue", "emotion", "eeg"}  # the others are untouched
    compose = yaml.safe_load((scaffolded / "compose.yaml").read_text())
    assert compose["services"][NAME]["expose"] == [str(PORT)]
    assert compose["services"][NAME]["build"]["dockerfile"] == f"services/{NAME}/Dockerfile"
    assert set(compose["networks"]) == {"frontend", "backends"}

    lock_check = subprocess.run(
        [sys.executable, "scripts/lock-requirements.py", "--check"], cwd=scaffolded, capture_output=True, text=True
    )
    assert lock_check.returncode == 0, lock_check.stderr


def test_the_gateway_config_accepts_the_new_entry(scaffolded):
    from vigil_main_backend.config import load_config

    config = load_config(str(scaffolded / "config" / "models.yaml"), env={})
    assert config.model_backends[NAME].enabled is False and config.model_backends[NAME].port == PORT


def test_generated_tests_pass_and_the_code_is_lint_clean(scaffolded):
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", f"tests/{NAME}", "-q", "-p", "no:cacheprovider"],
        cwd=scaffolded,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
    ruff = Path(sys.executable).parent / "ruff"
    for cmd in (["check"], ["format", "--check"]):
        lint = subprocess.run(
            [str(ruff), *cmd, f"services/{NAME}", f"tests/{NAME}"], cwd=scaffolded, capture_output=True
        )
        assert lint.returncode == 0, lint.stdout.decode()[-3000:]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((NAME, "--port", "8790"), f"services/{NAME} already exists"),
        (("eeg", "--port", "8791"), "services/eeg already exists"),
        (("fresh_one", "--port", "8769"), "port 8769 is already used"),
        (("fresh_one", "--port", str(PORT)), f"port {PORT} is already used"),
        (("Bad-Name", "--port", "8792"), "lower-case letters"),
        (("json", "--port", "8793"), "would shadow"),
    ],
)
def test_refuses_names_and_ports_that_exist(scaffolded, args, expected):
    before = {p: p.read_text() for p in (scaffolded / "compose.yaml", scaffolded / "config" / "models.yaml")}
    proc = _scaffold(scaffolded, *args)
    assert proc.returncode == 2 and expected in proc.stderr, proc.stderr
    assert {p: p.read_text() for p in before} == before  # nothing written
    assert not (scaffolded / "services" / "fresh_one").exists()


@pytest.mark.docker
def test_generated_image_builds_and_serves_alone(scaffolded):
    sys.path.insert(0, str(REPO / "tests" / "docker"))
    import dockerlib

    setup = dockerlib.docker_setup()
    tag_suffix = f"scaffold-{uuid.uuid4().hex[:8]}"
    image = f"vigil/{NAME}:{tag_suffix}"
    env = {**_env(), **setup, "DOCKER_BUILDKIT": "1", "VIGIL_IMAGE_PREFIX": "vigil/", "VIGIL_IMAGE_TAG": tag_suffix}
    build = subprocess.run(
        [str(scaffolded / "scripts" / "build-images.sh"), NAME],
        cwd=scaffolded,
        env=env,
        capture_output=True,
        text=True,
        timeout=dockerlib.BUILD_TIMEOUT_S,
    )
    assert build.returncode == 0, build.stderr[-6000:]
    try:
        with dockerlib.service_container(image, PORT) as (container, port):
            dockerlib.wait_http_ready(container, port)
            dockerlib.wait_docker_healthy(container)
            with dockerlib.ws_client(port) as ws:
                pong = dockerlib.rpc(ws, {"type": "health_check"})
                assert pong["status"] == "healthy" and pong["model"]["name"] == NAME
                data = {"values": [0.5, 1.5, -0.25, 2.0]}
                reply = dockerlib.rpc(ws, {"type": "inference_request", "request_id": "r1", "data": data})
                assert reply["type"] == "inference_response" and 0 < reply["data"]["score"] < 1, reply
                assert reply["model_version"] == pong["model"]["version"]
                bad = dockerlib.rpc(ws, {"type": "inference_request", "request_id": "r2", "data": {"values": []}})
                assert bad["code"] == "bad_request" and bad["request_id"] == "r2"
    finally:
        dockerlib.run_docker(setup, "image", "rm", "-f", image, check=False)
