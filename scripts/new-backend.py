#!/usr/bin/env python3
"""A new model backend in one command.

    scripts/new-backend.py NAME --port 8770 [--framework torch|none] [--no-lock]

Creates, from scripts/backend_template/:
- services/NAME/: main.py (settings layer + BaseModelBackend), vigil_NAME/ (backend, settings, the
  model class: the place to put your model), model/weights.json, requirements.in and its hashed
  lock (scripts/lock-requirements.py, needs PyPI), Dockerfile (the pattern of the other images),
  README.md;
- tests/NAME/: samples.py, a conformance test (seed sequence + bad inputs, in-process through
  shared_protocol.testing and over a socket) and a unit test of the model class;
- a `config/models.yaml` entry (enabled: false, as the seed's new entries) and a compose.yaml service.

Refuses a NAME that is not a lower-case identifier, that shadows a standard-library module, or
that already exists (services/, tests/, models.yaml, compose.yaml), and a port already used by
another service. Nothing is written when a check fails. Standard library only.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).resolve().parent / "backend_template"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{1,30}$")

FRAMEWORKS = {
    "none": {
        "__IMPORTS__": "",
        "__FRAMEWORK_NOTE__": "Pure Python (the image holds no ML framework); swap in numpy, torch, ... as needed.",
        "__FRAMEWORK_REQUIREMENTS__": "",
        "__INIT_BODY__": "        self.weights = list(weights)\n        self.bias = bias",
        "__SCORE__": (
            "    def _score(self, x: list[float]) -> float:\n"
            "        z = self.bias + sum(w * v for w, v in zip(self.weights, x, strict=True))\n"
            "        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))\n"
        ),
    },
    "torch": {
        "__IMPORTS__": "import torch",
        "__FRAMEWORK_NOTE__": "PyTorch: one torch.nn.Linear + sigmoid, on the CPU (set `device` to move it).",
        "__FRAMEWORK_REQUIREMENTS__": (
            "# torch from PyPI is the CUDA build (for GPU hosts); the host venv uses the CPU wheel of the same version.\n"
        ),
        "__INIT_BODY__": (
            "        self.layer = torch.nn.Linear(len(FEATURES), 1).eval()\n"
            "        with torch.no_grad():\n"
            "            self.layer.weight.copy_(torch.tensor([weights], dtype=torch.float32))\n"
            "            self.layer.bias.fill_(bias)"
        ),
        "__SCORE__": (
            "    def _score(self, x: list[float]) -> float:\n"
            "        with torch.inference_mode():\n"
            "            return float(torch.sigmoid(self.layer(torch.tensor([x], dtype=torch.float32)))[0, 0])\n"
        ),
    },
}


class ScaffoldError(Exception):
    pass


def camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def used_ports(root: Path) -> set[int]:
    """Every port named in models.yaml, compose.yaml and the services' Dockerfiles (EXPOSE)."""
    ports: set[int] = set()
    for text in (root / "config" / "models.yaml").read_text(), (root / "compose.yaml").read_text():
        ports |= {int(p) for p in re.findall(r"(?:port:\s*|:|\")(\d{4,5})\b", text)}
    for dockerfile in root.glob("services/*/Dockerfile"):
        ports |= {int(p) for p in re.findall(r"^EXPOSE\s+(\d+)", dockerfile.read_text(), re.M)}
    return ports


def compose_services(text: str) -> set[str]:
    block = text.split("\nservices:\n", 1)[1].split("\nnetworks:\n", 1)[0]
    return set(re.findall(r"^  ([a-z0-9_]+):\s*$", block, re.M))


def models_backends(text: str) -> set[str]:
    block = text.split("\nmodel_backends:\n", 1)[1]
    return set(re.findall(r"^  ([a-z0-9_]+):\s*$", block, re.M))


def check(root: Path, name: str, port: int) -> None:
    if not NAME_RE.match(name):
        raise ScaffoldError(f"name {name!r}: lower-case letters, digits and '_', starting with a letter (2-31 chars)")
    if name in sys.stdlib_module_names or name in {"tests", "shared_protocol", "support", "main"}:
        raise ScaffoldError(f"name {name!r} would shadow a module of that name (tests/{name} is importable as {name})")
    if importlib.util.find_spec(name) is not None and not (root / "services" / name).exists():
        raise ScaffoldError(f"name {name!r} would shadow the installed module {name!r}")
    for taken in (root / "services" / name, root / "tests" / name):
        if taken.exists():
            raise ScaffoldError(f"{taken.relative_to(root)} already exists")
    if name in compose_services((root / "compose.yaml").read_text()):
        raise ScaffoldError(f"compose.yaml already has a service {name!r}")
    if name in models_backends((root / "config" / "models.yaml").read_text()):
        raise ScaffoldError(f"config/models.yaml already has a backend {name!r}")
    if not 1024 < port < 65536:
        raise ScaffoldError(f"port {port}: pick one in 1025..65535 (containers run without privileges)")
    if port in used_ports(root):
        raise ScaffoldError(f"port {port} is already used by another service")


# Every image runs these besides shared_protocol's own dependencies: the event loop, the thread
# budget, the build backend of the vendored package, and pydantic (under pydantic-settings).
RUNTIME_EXTRAS = ("pydantic", "uvloop", "threadpoolctl", "setuptools")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


FRAMEWORK_PACKAGES = {"none": (), "torch": ("torch", "numpy")}


def shared_pins(root: Path, framework: str = "none") -> str:
    """`name==version` lines for shared_protocol's dependencies and the runtime extras, pinned as the
    existing services pin them (eeg first), so a new service stays in step with the others."""
    pyproject = (root / "shared_protocol" / "pyproject.toml").read_text()
    deps_block = pyproject.split("dependencies = [", 1)[1].split("]", 1)[0]
    names = list(FRAMEWORK_PACKAGES[framework])
    names += [re.split(r"[<>=!~; \[]", d, maxsplit=1)[0] for d in re.findall(r'"([^"]+)"', deps_block)]
    names += [n for n in RUNTIME_EXTRAS if _norm(n) not in {_norm(x) for x in names}]
    pins: dict[str, str] = {}
    sources = [root / "services" / "eeg" / "requirements.in", *sorted(root.glob("services/*/requirements.in"))]
    for source in sources:
        for line in source.read_text().splitlines():
            match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line.strip())
            if match:
                pins.setdefault(_norm(match.group(1)), line.strip())
    missing = [n for n in names if _norm(n) not in pins]
    if missing:
        raise ScaffoldError(f"no service pins {missing}: cannot write a pinned requirements.in")
    return "\n".join(pins[_norm(n)] for n in names) + "\n"


def render(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def scaffold(root: Path, name: str, port: int, framework: str, lock: bool = True) -> list[Path]:
    check(root, name, port)
    values = {
        "__NAME__": name,
        "__UPPER__": name.upper(),
        "__CLASS__": camel(name),
        "__PKG__": f"vigil_{name}",
        "__PORT__": str(port),
        "__FRAMEWORK__": framework,
        "__SHARED_PINS__": shared_pins(root, framework),
        **FRAMEWORKS[framework],
    }
    saved = {path: path.read_text() for path in (root / "config" / "models.yaml", root / "compose.yaml")}
    try:
        return _write(root, name, port, values, lock)
    except BaseException:  # nothing half-made stays behind
        shutil.rmtree(root / "services" / name, ignore_errors=True)
        shutil.rmtree(root / "tests" / name, ignore_errors=True)
        for path, text in saved.items():
            path.write_text(text)
        raise


def _write(root: Path, name: str, port: int, values: dict[str, str], lock: bool) -> list[Path]:
    written: list[Path] = []
    for source in sorted(TEMPLATE.rglob("*.tmpl")):
        rel = source.relative_to(TEMPLATE).with_suffix("")  # drop .tmpl
        top, rest = rel.parts[0], Path(*rel.parts[1:])
        rest = Path(str(rest).replace("vigil_pkg", f"vigil_{name}"))
        target = root / ("services" if top == "service" else "tests") / name / rest
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(source.read_text(), values))
        written.append(target)
    _append_models_yaml(root, name, port)
    _append_compose(root, name, port)
    written += [root / "config" / "models.yaml", root / "compose.yaml"]
    _tidy(root, [root / "services" / name, root / "tests" / name])
    if lock:
        written.append(_lock(root, root / "services" / name / "requirements.in"))
    return written


def _tidy(root: Path, paths: list[Path]) -> None:
    """Imports sorted and code formatted by the repo's ruff (its first-party list), when there is one."""
    ruff = root / ".venv" / "bin" / "ruff"
    ruff_cmd = str(ruff) if ruff.exists() else shutil.which("ruff")
    if ruff_cmd is None:
        return
    args = [str(p) for p in paths]
    subprocess.run([ruff_cmd, "check", "--fix", "--quiet", *args], cwd=root, check=False)
    subprocess.run([ruff_cmd, "format", "--quiet", *args], cwd=root, check=False)


def _append_models_yaml(root: Path, name: str, port: int) -> None:
    path = root / "config" / "models.yaml"
    text = path.read_text().rstrip("\n")
    text += (
        f"\n  {name}:                  # generated by scripts/new-backend.py; enable with VIGIL_{name.upper()}_ENABLED=true\n"
        f'    host: "localhost"\n    port: {port}\n    enabled: false\n    reconnect_interval: 5\n'
        f"    max_reconnect_attempts: 10\n    request_timeout: 30\n    inputs: [values]\n"
    )
    path.write_text(text)


def _append_compose(root: Path, name: str, port: int) -> None:
    path = root / "compose.yaml"
    text = path.read_text()
    head, sep, tail = text.partition("\nnetworks:\n")
    if not sep:
        raise ScaffoldError("compose.yaml has no top-level 'networks:' section to insert before")
    upper = name.upper()
    service = f"""
  {name}:   # generated by scripts/new-backend.py
    image: ${{VIGIL_IMAGE_PREFIX:-vigil/}}{name}:${{VIGIL_IMAGE_TAG:-dev}}
    build:
      context: .
      dockerfile: services/{name}/Dockerfile
      args: *build-args
    <<: *hardening
    restart: unless-stopped
    logging: *logging
    networks: [backends]
    expose: ["{port}"]
    environment:
      VIGIL_LOG_LEVEL: ${{VIGIL_LOG_LEVEL:-INFO}}
    healthcheck:
      test: ["CMD", "/opt/venv/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/readyz', timeout=2)"]
      interval: 5s
      timeout: 3s
      retries: 3
      start_period: 30s
    deploy:
      resources:
        limits:
          cpus: "${{VIGIL_{upper}_CPUS:-0.5}}"
          memory: ${{VIGIL_{upper}_MEMORY:-512M}}
"""
    path.write_text(head.rstrip("\n") + "\n" + service + sep + tail)


def _lock(root: Path, src: Path) -> Path:
    """The hashed lock of the new requirements.in, by the repo's own lock script (uv, PyPI)."""
    spec = importlib.util.spec_from_file_location("lock_requirements", root / "scripts" / "lock-requirements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.ROOT = root
    lock = src.with_suffix(".txt")
    try:
        module.compile_lock(src, lock, upgrade=False)
    except SystemExit as exc:  # the lock script exits when uv is missing
        raise ScaffoldError(f"cannot lock {src.name}: {exc} (or pass --no-lock)") from None
    return lock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="service name: lower-case letters, digits, '_'")
    parser.add_argument("--port", type=int, required=True, help="the service's port (unused by any other)")
    parser.add_argument("--framework", choices=sorted(FRAMEWORKS), default="none")
    parser.add_argument("--no-lock", action="store_true", help="skip the hashed lock (run lock-requirements later)")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        written = scaffold(args.root.resolve(), args.name, args.port, args.framework, lock=not args.no_lock)
    except ScaffoldError as exc:
        print(f"new-backend: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path.relative_to(args.root.resolve()))
    print(f"next: docs/new-backend.md (tests: .venv/bin/python -m pytest tests/{args.name})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
