"""The images' hashed lock files match their short .in files (no resolver run: header digests).

scripts/lock-requirements.py writes the sha256 of each .in (plus compile flags) into its lock's
header; editing a .in without re-locking fails here. Also checked: every requirement in a lock is
hashed and exactly pinned (what `pip install --require-hashes` in the Dockerfiles needs), and every
direct pin of the .in is in the lock at the same version.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from support.locks import load_lock_module, normalize

ROOT = Path(__file__).resolve().parent.parent


locks = load_lock_module()
PAIRS = locks.lock_pairs()
NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")


def _entries(lock: Path) -> list[tuple[str, list[str]]]:
    """(requirement line, its --hash options) for every requirement of a lock."""
    entries: list[tuple[str, list[str]]] = []
    for raw in lock.read_text().splitlines():
        line = raw.strip().rstrip("\\").strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("--hash="):
            entries[-1][1].append(line)
        else:
            entries.append((line, []))
    return entries


def _direct_pins(src: Path) -> dict[str, str]:
    pins = {}
    for raw in src.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{src}: '{line}' is not an exact pin"
            pins[normalize(name)] = version.strip()
    return pins


def test_every_image_has_locks():
    services = {p.parent.name for p in ROOT.glob("services/*/Dockerfile")}
    locked = {src.parent.name for src, _ in PAIRS if src.name == "requirements.in"}
    assert services <= locked, f"services without a requirements.in: {sorted(services - locked)}"


@pytest.mark.parametrize("src,lock", PAIRS, ids=[str(s.relative_to(ROOT)) for s, _ in PAIRS])
def test_lock_matches_its_in_file(src: Path, lock: Path):
    assert lock.exists(), f"{lock} missing: run scripts/lock-requirements.py"
    assert locks.stored_digest(lock) == locks.input_digest(src), (
        f"{lock.relative_to(ROOT)} is stale against {src.name}: run scripts/lock-requirements.py"
    )


@pytest.mark.parametrize("src,lock", PAIRS, ids=[str(s.relative_to(ROOT)) for s, _ in PAIRS])
def test_lock_is_hashed_and_exact(src: Path, lock: Path):
    entries = _entries(lock)
    assert entries, f"{lock} holds no requirement"
    for requirement, hashes in entries:
        assert re.match(r"^[A-Za-z0-9._-]+==[^ ;]+", requirement), f"{lock}: not an exact pin: {requirement}"
        assert hashes and all(h.startswith("--hash=sha256:") for h in hashes), f"{lock}: no sha256 for {requirement}"
    locked = {}
    for requirement, _ in entries:
        name, _, rest = requirement.partition("==")
        locked.setdefault(normalize(name), set()).add(re.split(r"[ ;]", rest, maxsplit=1)[0])
    for name, version in _direct_pins(src).items():
        assert version in locked.get(name, set()), f"{lock}: {name}=={version} from {src.name} is not in the lock"


def test_stale_lock_is_detected(tmp_path: Path):
    """The check itself can fail: a copied service whose .in changed after locking."""
    src, lock = PAIRS[0]
    service = tmp_path / "services" / "demo"
    service.mkdir(parents=True)
    shutil.copyfile(src, service / "requirements.in")
    shutil.copyfile(lock, service / "requirements.txt")
    assert locks.stale_locks(tmp_path) == []
    with (service / "requirements.in").open("a") as f:
        f.write("idna==3.20\n")
    assert locks.stale_locks(tmp_path) == [
        "services/demo/requirements.txt: stale against requirements.in (run scripts/lock-requirements.py)"
    ]


def test_host_pins_drop_hashes_and_cuda_only_deps(tmp_path: Path):
    locks.host_pins(tmp_path)
    fatigue = (tmp_path / "fatigue--requirements.txt").read_text()
    assert "--hash" not in fatigue
    assert re.search(r"^torch==2\.", fatigue, re.M)
    assert not re.search(r"^(nvidia-|triton==)", fatigue, re.M)
