"""Model versions and hot reload: what a version is, which versions are known, what a reload is doing.

- A **version** is the digest of the model's files (`model_digest`): `sha256-` and 16 hex digits of
  a SHA-256 over every file's relative path and bytes (a directory) or the file's bytes. The same
  files give the same version on every machine, so an operator can compare versions across replicas.
- `VersionHistory` keeps the last N versions loaded (with the path each came from): `reload_model`
  with one of their versions and no path reloads it from that path (a rollback). A version is
  reloaded only if the files there still have that digest; keep each version in its own directory.
- `ReloadState` is what `pong.model.reload` reports: `idle`, `loading` (with the version being
  loaded), or the last outcome (`failed` with the reason), plus counters.
- `memory_check` refuses a reload that would not fit: a reload briefly holds two models (the live
  one serves while the new one loads and warms up), so the process needs its current memory plus
  the new model's size (at least its size on disk) below the tightest of `max_reload_memory_bytes`
  and the container's memory limit (cgroup v2 `memory.max`, v1 `memory.limit_in_bytes`).
- `ReloadArgs` parses the admin message `{"type": "reload_model", "request_id"?, "version"?, "path"?,
  "model"?}` (`model`: only at the gateway, naming the backend).
"""

from __future__ import annotations

import enum
import hashlib
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from . import messages
from .errors import ErrorCode
from .server import Peer, ProtocolServer

RELOAD_MODEL = "reload_model"  # admin message type (backend and gateway)
RELOAD_ACCEPTED = "reload_accepted"  # immediate reply: the reload started in the background
VERSION_PREFIX = "sha256-"
MAX_ARG_LENGTH = 4096  # a path or version longer than this is not one


class ReloadRefused(Exception):
    """A reload that cannot start (bad arguments, unknown version, memory, one already running)."""


# ---- versions ------------------------------------------------------------------------------------


def model_digest(path: str | os.PathLike[str]) -> str:
    """`sha256-<16 hex>` over a file's bytes, or over every file (relative path + bytes) of a directory."""
    root = Path(path)
    digest = hashlib.sha256()
    if root.is_file():
        _hash_file(digest, root)
    elif root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file())
        if not files:
            raise FileNotFoundError(f"model directory {root} holds no files")
        for file in files:
            digest.update(file.relative_to(root).as_posix().encode("utf-8") + b"\0")
            _hash_file(digest, file)
    else:
        raise FileNotFoundError(f"model path {root} is neither a file nor a directory")
    return VERSION_PREFIX + digest.hexdigest()[:16]


def _hash_file(digest: Any, file: Path) -> None:
    with file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def disk_size(path: str | os.PathLike[str]) -> int:
    """Bytes of the model's files: the least its weights take once loaded."""
    root = Path(path)
    if root.is_file():
        return root.stat().st_size
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


@dataclass(slots=True)
class ModelVersion:
    version: str
    source: str  # the path it was loaded from
    loaded_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "path": self.source, "loaded_at": round(self.loaded_at, 3)}


class VersionHistory:
    """The last `size` versions loaded, newest last (the live one included)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("model history must hold at least 1 version")
        self.size = size
        self._versions: OrderedDict[str, ModelVersion] = OrderedDict()

    def add(self, entry: ModelVersion) -> None:
        self._versions.pop(entry.version, None)
        self._versions[entry.version] = entry
        while len(self._versions) > self.size:
            self._versions.popitem(last=False)

    def get(self, version: str) -> ModelVersion | None:
        return self._versions.get(version)

    def to_list(self) -> list[dict[str, Any]]:
        return [entry.to_dict() for entry in self._versions.values()]


# ---- the state a reload reports ------------------------------------------------------------------


class ReloadPhase(enum.StrEnum):
    IDLE = "idle"  # nothing ever reloaded, or the last reload succeeded
    LOADING = "loading"  # a new model is loading / warming up; the live one serves
    FAILED = "failed"  # the last reload failed; the live model kept serving


@dataclass(slots=True)
class ReloadState:
    phase: ReloadPhase = ReloadPhase.IDLE
    target: str | None = None  # the path being (or last) loaded
    error: str | None = None
    succeeded: int = 0
    failed: int = 0
    refused: int = 0
    last_duration_s: float | None = None
    started_at: float = 0.0

    def begin(self, target: str) -> None:
        self.phase, self.target, self.error, self.started_at = ReloadPhase.LOADING, target, None, time.monotonic()

    def succeed(self) -> None:
        self.phase = ReloadPhase.IDLE
        self.succeeded += 1
        self.last_duration_s = round(time.monotonic() - self.started_at, 3)

    def fail(self, reason: str) -> None:
        self.phase, self.error = ReloadPhase.FAILED, reason
        self.failed += 1
        self.last_duration_s = round(time.monotonic() - self.started_at, 3)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "state": str(self.phase),
            "succeeded": self.succeeded,
            "failed": self.failed,
            "refused": self.refused,
        }
        if self.target is not None:
            out["path"] = self.target
        if self.error is not None:
            out["error"] = self.error
        if self.last_duration_s is not None:
            out["last_duration_s"] = self.last_duration_s
        return out


# ---- memory --------------------------------------------------------------------------------------


def cgroup_memory(cgroup_root: str = "/sys/fs/cgroup") -> tuple[int | None, int | None]:
    """(limit, current) bytes of this container's memory cgroup (v2, then v1); None where unknown."""
    root = Path(cgroup_root)
    for limit_name, current_name in (("memory.max", "memory.current"), ("memory/memory.limit_in_bytes", None)):
        limit = _read_int(root / limit_name)
        if limit is not None or (root / limit_name).exists():
            current = (
                _read_int(root / current_name) if current_name else _read_int(root / "memory/memory.usage_in_bytes")
            )
            # v1 reports "no limit" as a huge number
            return (limit if limit is not None and limit < 1 << 60 else None), current
    return None, None


def process_rss() -> int | None:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (v2 unlimited) -> None


def memory_check(new_model_bytes: int, configured_limit: int | None, *, cgroup_root: str = "/sys/fs/cgroup") -> None:
    """Raise ReloadRefused when holding the new model next to the live one would pass a limit."""
    cg_limit, cg_current = cgroup_memory(cgroup_root)
    limits = [(configured_limit, "max_reload_memory_bytes"), (cg_limit, "the container's memory limit")]
    known = [(value, name) for value, name in limits if value]
    if not known:
        return
    limit, name = min(known)
    in_use = cg_current if cg_limit and limit == cg_limit and cg_current else process_rss() or 0
    if in_use + new_model_bytes > limit:
        raise ReloadRefused(
            f"reload refused: the process uses {in_use} bytes and the new model needs at least "
            f"{new_model_bytes} more while both are held, over {name} ({limit} bytes)"
        )


# ---- the admin message ---------------------------------------------------------------------------


class _RawArgs(msgspec.Struct):
    request_id: Any = None
    version: Any = None
    path: Any = None
    model: Any = None


@dataclass(slots=True)
class ReloadArgs:
    request_id: str | None
    version: str | None
    path: str | None
    model: str | None

    @classmethod
    def parse(cls, frame: str) -> ReloadArgs:
        """The arguments of a reload_model frame (already known to be a JSON object)."""
        raw = msgspec.json.decode(frame, type=_RawArgs)
        request_id = raw.request_id if isinstance(raw.request_id, str) and 0 < len(raw.request_id) <= 256 else None
        values = {}
        for name in ("version", "path", "model"):
            value = getattr(raw, name)
            if value is not None and not (isinstance(value, str) and 0 < len(value) <= MAX_ARG_LENGTH):
                raise ReloadRefused(f"field '{name}' must be a non-empty string of at most {MAX_ARG_LENGTH} characters")
            values[name] = value
        return cls(request_id, **values)


def accepted_message(request_id: str | None, path: str, version: str | None) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": RELOAD_ACCEPTED, "path": path}
    if version is not None:
        msg["version"] = version
    if request_id is not None:
        msg["request_id"] = request_id
    return msg


def inside(path: str, root: str) -> bool:
    """Whether `path` (symlinks resolved) lies in the directory `root`."""
    return Path(path).resolve().is_relative_to(Path(root).resolve())


# ---- the gateway's admin route: reload_model with `model` on :8765 ----------------------------------

RELOAD_FRAME = "_reload_frame"  # a handler's control_reply note: this frame is a reload_model


class AdminFrameServer(ProtocolServer):
    """The server core, plus: a `reload_model` frame (which the handler's `control_reply` marks with
    RELOAD_FRAME) becomes an admitted request whose `data` holds its arguments, answered by the
    handler's `handle` like any request (counted in flight, drained on shutdown)."""

    def admit_frame(self, peer: Peer, frame: str | bytes) -> tuple[messages.Message, int] | dict[str, Any]:
        admitted = super().admit_frame(peer, frame)
        if not (isinstance(admitted, dict) and admitted.get("type") == RELOAD_FRAME):
            return admitted
        request_id = admitted.get("request_id")
        try:
            if not isinstance(frame, str):
                raise ReloadRefused("reload_model must be a JSON text frame")
            args = ReloadArgs.parse(frame)
        except ReloadRefused as exc:
            return messages.error_message(request_id, ErrorCode.BAD_REQUEST, str(exc))
        charge = len(frame)
        refusal = self._admission_refusal(peer, charge)
        if refusal is not None:
            return messages.error_message(request_id, *refusal)
        peer.in_flight += 1
        peer.pending_bytes += charge
        self.in_flight += 1
        self.pending_bytes += charge
        self.idle.clear()
        data = {"model": args.model, "path": args.path, "version": args.version}
        return messages.Message(RELOAD_MODEL, request_id, data=data, size=len(frame)), charge


async def send_reload(
    url: str, *, path: str | None = None, version: str | None = None, token: str | None = None, timeout: float = 30
) -> dict[str, Any]:
    """One reload_model to one backend; its immediate reply (reload_accepted or error)."""
    import asyncio

    from websockets.asyncio.client import connect

    headers = {"Authorization": f"Bearer {token}"} if token else None
    message: dict[str, Any] = {"type": RELOAD_MODEL, "request_id": "reload"}
    message.update({k: v for k, v in (("path", path), ("version", version)) if v is not None})
    async with connect(url, additional_headers=headers, open_timeout=timeout) as ws:
        await ws.send(messages.encode(message))
        return messages.parse_reply(await asyncio.wait_for(ws.recv(), timeout))


# ---- operator command: python -m shared_protocol.reload ------------------------------------------


async def request_reload(
    url: str, *, path: str | None = None, version: str | None = None, token: str | None = None, timeout: float = 300
) -> dict[str, Any]:
    """Send reload_model to a backend and wait for its outcome; returns the final pong `model`."""
    import asyncio

    from websockets.asyncio.client import connect

    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with connect(url, additional_headers=headers, max_size=None) as ws:
        message: dict[str, Any] = {"type": RELOAD_MODEL, "request_id": "reload"}
        message.update({k: v for k, v in (("path", path), ("version", version)) if v is not None})
        await ws.send(messages.encode(message))
        reply = messages.parse_reply(await asyncio.wait_for(ws.recv(), 30))
        if reply.get("type") != RELOAD_ACCEPTED:
            raise ReloadRefused(reply.get("error", str(reply)))
        deadline = time.monotonic() + timeout
        while True:
            await ws.send(messages.encode(messages.health_check()))
            model = messages.parse_reply(await asyncio.wait_for(ws.recv(), 30))["model"]
            if model["reload"]["state"] != ReloadPhase.LOADING or time.monotonic() > deadline:
                return model
            await asyncio.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import asyncio
    import json
    import sys

    from .auth import parse_tokens

    parser = argparse.ArgumentParser(
        prog="python -m shared_protocol.reload", description="Reload a model backend's model and wait for the outcome."
    )
    parser.add_argument("--url", default="ws://127.0.0.1:8768", help="the backend (inside its container: 127.0.0.1)")
    parser.add_argument("--path", help="model file or directory to load (in the model repository)")
    parser.add_argument("--version", help="a known version (rollback), or the version --path must hold")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    tokens = parse_tokens(os.environ.get("VIGIL_API_TOKENS"))
    token = os.environ.get("VIGIL_BACKEND_TOKEN") or (tokens[0] if tokens else None)
    try:
        model = asyncio.run(
            request_reload(args.url, path=args.path, version=args.version, token=token, timeout=args.timeout)
        )
    except (ReloadRefused, OSError) as exc:
        print(f"reload refused: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"version": model["version"], "path": model.get("path"), "reload": model["reload"]}, indent=2))
    return 0 if model["reload"]["state"] == ReloadPhase.IDLE else 1


if __name__ == "__main__":
    raise SystemExit(main())
