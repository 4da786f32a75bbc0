"""The fatigue and emotion images share one torch layer, and nothing lets it drift.

BuildKit reuses a layer across two builds only when every instruction up to it is the same: the
`torch` stage must be byte-identical in both Dockerfiles and come before anything service-specific,
and the service locks must not move a package the torch layer installed (pip would then install a
second copy on top, and a different torch would cost a second 5 GB). No Docker needed here;
tests/docker/test_torch_layer_shared.py checks the built images.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from support.locks import load_lock_module, normalize

ROOT = Path(__file__).resolve().parent.parent
# The torch layer's lock: under services/ because only that (and the vendored packages) is in the
# build context; both Dockerfiles copy it from there.
TORCH_IN = ROOT / "services" / "fatigue" / "requirements-torch.in"
TORCH_LOCK = TORCH_IN.with_suffix(".txt")
SERVICES = ("fatigue", "emotion")
BEGIN = "# ---- torch layer: byte-identical in"
END = "# ---- end of the torch layer ----"
REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)")


locks = load_lock_module()


def torch_block(dockerfile: Path) -> str:
    """The text from the BEGIN marker to the END marker (both included)."""
    text = dockerfile.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1, f"{dockerfile}: one torch-layer block expected"
    start = text.index(BEGIN)
    return text[start : text.index(END, start) + len(END)]


def instructions(text: str) -> list[str]:
    """Dockerfile instructions with continuation lines joined, comments and blank lines dropped."""
    out: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        out.append(pending + line)
        pending = ""
    return out


def lock_pins(lock: Path) -> dict[str, set[str]]:
    """name -> the requirement lines (version + marker) a lock pins for it."""
    pins: dict[str, set[str]] = {}
    for raw in lock.read_text().splitlines():
        match = REQUIREMENT.match(raw)
        if match:
            pins.setdefault(normalize(match.group(1)), set()).add(raw.rstrip("\\").strip())
    return pins


def torch_version() -> str:
    (line,) = lock_pins(TORCH_LOCK)["torch"]
    return REQUIREMENT.match(line).group(2)


def test_torch_block_is_identical_in_both_dockerfiles():
    blocks = {name: torch_block(ROOT / "services" / name / "Dockerfile") for name in SERVICES}
    assert blocks["fatigue"] == blocks["emotion"], "the torch-layer blocks differ: BuildKit would build two layers"
    steps = instructions(blocks["fatigue"])
    assert steps[0] == "FROM ${BASE_IMAGE} AS torch", steps[0]
    assert "COPY services/fatigue/requirements-torch.txt /tmp/requirements-torch.txt" in steps, steps
    (run,) = [s for s in steps if s.startswith("RUN ")]
    # Default path: the whole lock, hashed. Index path: exactly the lock's torch version, then the
    # rest of the lock, hashed.
    assert "/opt/venv/bin/pip install --require-hashes -r /tmp/requirements-torch.txt;" in run
    assert '--index-url "$TORCH_INDEX_URL" "torch==$version"' in run
    assert "/opt/venv/bin/pip install --require-hashes -r /tmp/torch-deps.txt" in run


@pytest.mark.parametrize("service", SERVICES)
def test_torch_stage_comes_first_and_the_service_builds_on_it(service: str):
    text = (ROOT / "services" / service / "Dockerfile").read_text()
    steps = instructions(text)
    # Nothing service-specific before the torch stage: only the global ARG, the same in both files.
    before = instructions(text[: text.index(BEGIN)])
    assert before == ["ARG BASE_IMAGE=python:3.11-slim-bookworm"], before
    # The stage that installs the service lock starts from torch and adds no second venv.
    froms = [s for s in steps if s.startswith("FROM ")]
    assert any(re.fullmatch(r"FROM torch AS \w+", s) for s in froms), froms
    after = instructions(text[text.index(END) :])
    assert not any("python3 -m venv /opt/venv" in s for s in after), "a second /opt/venv would hide the torch layer"
    service_install = [s for s in after if "/tmp/requirements.txt" in s and "pip install" in s]
    assert service_install and all("--require-hashes" in s for s in service_install), service_install
    # ... and that stage descends from `torch` (FROM torch, or FROM a stage that does).
    stage_of: dict[str, str] = {}
    current = None
    for step in steps:
        match = re.fullmatch(r"FROM (\S+) AS (\S+)", step)
        if match:
            stage_of[match.group(2)] = match.group(1)
            current = match.group(2)
        elif step in service_install:
            break
    chain = [current]
    while chain[-1] in stage_of:
        chain.append(stage_of[chain[-1]])
    assert "torch" in chain, f"{service}: the service lock is installed in {chain}, not on top of torch"


def test_torch_lock_is_fresh_hashed_and_pins_one_torch():
    assert locks.stored_digest(TORCH_LOCK) == locks.input_digest(TORCH_IN), (
        f"{TORCH_LOCK.relative_to(ROOT)} is stale against its .in: run scripts/lock-requirements.py"
    )
    entries = 0
    lines = TORCH_LOCK.read_text().splitlines()
    for i, raw in enumerate(lines):
        if REQUIREMENT.match(raw):
            entries += 1
            assert i + 1 < len(lines) and lines[i + 1].strip().startswith("--hash=sha256:"), f"unhashed: {raw}"
        elif raw and not raw.startswith((" ", "#")):
            pytest.fail(f"not an exact pin: {raw}")
    assert entries > 1
    assert len(lock_pins(TORCH_LOCK)["torch"]) == 1


def test_every_torch_pin_in_the_repo_is_the_torch_layers():
    """The service .in files and locks still name torch (scripts/dev-setup.sh reads the host's
    version there; tests/test_locks.py wants direct pins in locks): same version, or the build fails."""
    version = torch_version()
    files = [
        TORCH_IN,
        *sorted(ROOT.glob("services/*/requirements*.in")),
        *sorted(ROOT.glob("services/*/requirements*.txt")),
    ]
    seen = []
    for path in files:
        for raw in path.read_text().splitlines():
            match = REQUIREMENT.match(raw.strip())
            if match and normalize(match.group(1)) == "torch":
                seen.append(path.relative_to(ROOT))
                assert match.group(2) == version, (
                    f"{path.relative_to(ROOT)} pins torch=={match.group(2)}, not {version}"
                )
    assert TORCH_IN.relative_to(ROOT) in seen and TORCH_LOCK.relative_to(ROOT) in seen


@pytest.mark.parametrize("service", SERVICES)
def test_service_lock_keeps_the_torch_layers_versions(service: str):
    """What both install is pinned identically (so pip skips it), and the CUDA-only packages stay in
    the torch layer (a TORCH_INDEX_URL build with the CPU wheel must not pull them back in)."""
    torch_pins = lock_pins(TORCH_LOCK)
    service_lock = ROOT / "services" / service / "requirements.txt"
    service_pins = lock_pins(service_lock)
    shared = torch_pins.keys() & service_pins.keys()
    assert "torch" in shared
    for name in sorted(shared):
        assert service_pins[name] == torch_pins[name], (
            f"{service_lock.relative_to(ROOT)} pins {sorted(service_pins[name])}, the torch layer "
            f"{sorted(torch_pins[name])}: run scripts/lock-requirements.py"
        )
    cuda = sorted(name for name in service_pins if locks.CUDA_ONLY.match(name))
    assert not cuda, (
        f"{service_lock.relative_to(ROOT)} pins CUDA-only packages {cuda}: run scripts/lock-requirements.py"
    )
