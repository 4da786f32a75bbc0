#!/usr/bin/env python3
"""Re-lock the shared torch layer, then the fatigue and emotion runtime locks on top of it.

    docker/torch/lock.py             # services/fatigue/requirements-torch.txt, then both requirements.txt
    docker/torch/lock.py --upgrade   # let transitive pins move to the newest allowed

The torch layer's lock (services/fatigue/requirements-torch.txt, from requirements-torch.in) is an
ordinary lock of scripts/lock-requirements.py; this script compiles it the same way (same uv flags,
same header digest). The two runtime locks get two extra flags on top, which lock-requirements.py
does not know about:
- `-c services/fatigue/requirements-torch.txt`: every package that both the torch layer and the
  service install gets the torch layer's version, so pip finds it installed and the service layer
  adds only what is on top of torch;
- `--no-emit-package` for each CUDA-only package (nvidia-*, triton, cuda-*): the torch layer holds
  them, and a TORCH_INDEX_URL build with the CPU wheel must not pull them back in.
The runtime locks still pin torch itself and its pure-Python deps, at the same versions:
scripts/dev-setup.sh and CI take the host's torch version from services/*/requirements*.in, and
tests/test_locks.py wants every direct pin in its lock and torch in fatigue's host pins.
tests/test_torch_layer.py fails when the locks drift apart (e.g. after a plain
scripts/lock-requirements.py run changed a runtime .in): then run this script.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
TORCH_IN = ROOT / "services" / "fatigue" / "requirements-torch.in"
TORCH_LOCK = TORCH_IN.with_suffix(".txt")
# The runtime locks installed on top of the torch layer.
SERVICE_INS = (ROOT / "services" / "fatigue" / "requirements.in", ROOT / "services" / "emotion" / "requirements.in")


def load_lock_module():
    """scripts/lock-requirements.py (hyphenated, so loaded by path)."""
    spec = importlib.util.spec_from_file_location("lock_requirements", ROOT / "scripts" / "lock-requirements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def locked_names(lock: Path) -> list[str]:
    """Package names pinned by a lock (a requirement line starts at column 0)."""
    names = {re.split(r"[=<>!~; \[]", line, maxsplit=1)[0].lower() for line in lock.read_text().splitlines()}
    return sorted(name for name in names if re.match(r"[a-z0-9]", name))


def compile_one(locks, src: Path, extra: list[str], upgrade: bool) -> None:
    """scripts/lock-requirements.py's compile_lock, plus extra uv flags."""
    lock = src.with_suffix(".txt")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / lock.name
        if lock.exists() and not upgrade:
            shutil.copyfile(lock, out)  # uv keeps the pins it finds in the output file
        cmd = [locks.uv_binary(), "pip", "compile", "--quiet", "--no-header", *locks.compile_flags(src), *extra]
        cmd += ["--upgrade"] if upgrade else []
        cmd += [str(src.relative_to(ROOT)), "-o", str(out)]
        subprocess.run(cmd, cwd=ROOT, check=True)
        lock.write_text(locks.header(src) + out.read_text())
    print(f"locked {lock.relative_to(ROOT)}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upgrade", action="store_true", help="re-resolve transitive pins from scratch")
    args = parser.parse_args()
    locks = load_lock_module()
    compile_one(locks, TORCH_IN, [], args.upgrade)
    extra = ["-c", str(TORCH_LOCK.relative_to(ROOT))]
    for name in locked_names(TORCH_LOCK):
        if locks.CUDA_ONLY.match(name):
            extra += ["--no-emit-package", name]
    for src in SERVICE_INS:
        compile_one(locks, src, extra, upgrade=False)  # the torch lock's pins, not the newest
    return 0


if __name__ == "__main__":
    sys.exit(main())
