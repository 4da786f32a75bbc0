"""Main backend configuration: config/models.yaml (the seed's keys) validated with pydantic,
every key overridable by environment variables (compose uses them).

Env overrides, in the main backend's own namespace: VIGIL_GATEWAY_BACKENDS__<NAME>__<KEY>
(e.g. VIGIL_GATEWAY_BACKENDS__EEG__HOST=eeg) and VIGIL_GATEWAY_<KEY> for the `main_backend` section.
The former VIGIL_<NAME>_<KEY> / VIGIL_MAIN_<KEY> still work, with a deprecation warning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared_protocol.limits import (
    DEFAULT_BACKEND_MAX_IN_FLIGHT_PER_CONNECTION,
    DEFAULT_GRACE_PERIOD,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_IN_FLIGHT_PER_CONNECTION,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_PENDING_BYTES,
    DEFAULT_MAX_PENDING_BYTES_PER_CONNECTION,
)

from .discovery import parse_endpoint

logger = logging.getLogger(__name__)

# Which payload keys of an `analyze` request each known backend consumes, when config is silent.
DEFAULT_INPUTS = {"fatigue": ["image"], "emotion": ["image"], "eeg": ["eeg"]}


class ConfigError(Exception):
    """Invalid configuration; main.py prints it and exits with code 2."""


class BackendConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The seed's keys.
    host: str = "localhost"
    port: int = Field(ge=1, le=65535)
    enabled: bool = True
    reconnect_interval: float = Field(default=5.0, gt=0, description="seconds; cap of the reconnect backoff")
    max_reconnect_attempts: int = Field(default=10, ge=1, description="failures before the backend is 'down'")
    request_timeout: float = Field(default=30.0, gt=0, description="seconds")
    # vigil additions.
    required: bool = Field(default=False, description="/readyz is 503 until this backend is connected")
    inputs: list[str] | None = Field(default=None, description="payload keys of `analyze` this backend uses")
    max_in_flight: int = Field(
        default=DEFAULT_BACKEND_MAX_IN_FLIGHT_PER_CONNECTION, ge=1, description="requests in flight per replica"
    )
    batch_frames: bool = Field(
        default=True,
        description="offer batch frames (vigil.msgpack.batch) on the connection to each replica; it may decline",
    )
    # Replicas (vigil_main_backend.replicas): every address `host` resolves to is one replica, unless
    # `endpoints` lists them ("host" or "host:port", port defaulting to `port`).
    endpoints: list[str] = Field(default_factory=list, description="explicit replicas; env: comma-separated")
    resolve_interval: float = Field(default=5.0, gt=0, description="seconds between re-resolutions of `host`")

    @field_validator("endpoints", mode="before")
    @classmethod
    def _split_endpoints(cls, value: Any) -> Any:
        if isinstance(value, str):  # VIGIL_EEG_ENDPOINTS=eeg-1:8769,eeg-2:8769
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("endpoints")
    @classmethod
    def _endpoints_parse(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_endpoint(text, 1)  # ValueError names the bad entry
        return value

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"


class MainBackendConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "localhost"
    port: int = Field(default=8765, ge=0, le=65535)
    health_interval: float = Field(default=10.0, gt=0, description="seconds between health_checks to backends")
    # Limits: defaults and meaning in shared_protocol.limits (one place for every server).
    max_message_size: int = Field(default=DEFAULT_MAX_MESSAGE_SIZE, ge=1024)
    max_in_flight_per_connection: int = Field(default=DEFAULT_MAX_IN_FLIGHT_PER_CONNECTION, ge=1)
    max_connections: int = Field(default=DEFAULT_MAX_CONNECTIONS, ge=1)
    max_pending_bytes: int = Field(default=DEFAULT_MAX_PENDING_BYTES, ge=1024)
    max_pending_bytes_per_connection: int = Field(default=DEFAULT_MAX_PENDING_BYTES_PER_CONNECTION, ge=1024)
    grace_period: float = Field(default=DEFAULT_GRACE_PERIOD, ge=0)
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description=(
            "gateway processes sharing the port (SO_REUSEPORT); each has its own backend connections, and "
            "max_connections and max_pending_bytes are divided among them (docs/scaling.md)"
        ),
    )

    @model_validator(mode="after")
    def _workers_need_a_fixed_port(self) -> MainBackendConfig:
        # Port 0 would give every worker its own random port instead of one shared one.
        if self.workers > 1 and self.port == 0:
            raise ValueError("workers > 1 needs a fixed port (port 0 would give each worker its own port)")
        return self


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    main_backend: MainBackendConfig = Field(default_factory=MainBackendConfig)
    model_backends: dict[str, BackendConfig] = Field(default_factory=dict)

    @field_validator("model_backends")
    @classmethod
    def _names_are_simple(cls, value: dict[str, BackendConfig]) -> dict[str, BackendConfig]:
        for name in value:
            if not name.replace("_", "").isalnum() or not name.islower():
                raise ValueError(f"backend name {name!r} must be lower-case letters, digits and '_'")
        return value

    def inputs_of(self, name: str) -> list[str]:
        configured = self.model_backends[name].inputs
        return configured if configured is not None else DEFAULT_INPUTS.get(name, [])


GATEWAY_PREFIX = "VIGIL_GATEWAY_"
BACKENDS_PREFIX = GATEWAY_PREFIX + "BACKENDS__"


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Overlay environment variables; values are parsed as YAML scalars (true, 5, 1.5).

    The main backend's own namespace: `VIGIL_GATEWAY_<KEY>` for the `main_backend` section and
    `VIGIL_GATEWAY_BACKENDS__<NAME>__<KEY>` for a model backend entry. The names of the first
    releases (`VIGIL_MAIN_<KEY>`, `VIGIL_<NAME>_<KEY>`, which inside a model backend's container now
    mean that service's own settings) still work, below the new names, with a deprecation warning.
    """
    backends = raw.setdefault("model_backends", {}) or {}
    raw["model_backends"] = backends
    main = raw.setdefault("main_backend", {}) or {}
    raw["main_backend"] = main
    legacy: list[tuple[str, dict[str, Any], str, str]] = []  # (var, section, key, new name)
    current: list[tuple[str, dict[str, Any], str]] = []
    for var in env:
        if not var.startswith("VIGIL_"):
            continue
        if var.startswith(BACKENDS_PREFIX):
            name, sep, key = var[len(BACKENDS_PREFIX) :].lower().partition("__")
            if sep and key in BackendConfig.model_fields and name:
                current.append((var, _section(backends, name), key))
            continue
        if var.startswith(GATEWAY_PREFIX):
            key = var[len(GATEWAY_PREFIX) :].lower()
            if key in MainBackendConfig.model_fields:
                current.append((var, main, key))
            continue
        rest = var[len("VIGIL_") :].lower()
        if rest.startswith("main_"):
            key = rest[len("main_") :]
            if key in MainBackendConfig.model_fields:
                legacy.append((var, main, key, GATEWAY_PREFIX + key.upper()))
            continue
        for name in sorted(set(backends) | set(DEFAULT_INPUTS), key=len, reverse=True):
            prefix = name + "_"
            if rest.startswith(prefix) and rest[len(prefix) :] in BackendConfig.model_fields:
                key = rest[len(prefix) :]
                new_name = f"{BACKENDS_PREFIX}{name.upper()}__{key.upper()}"
                legacy.append((var, _section(backends, name), key, new_name))
                break
    for var, section, key, new_name in legacy:
        logger.warning("%s is deprecated and will be removed: use %s", var, new_name)
        section[key] = _scalar(var, env[var])
    for var, section, key in current:  # the new names win
        section[key] = _scalar(var, env[var])
    return raw


def _section(backends: dict[str, Any], name: str) -> dict[str, Any]:
    section = backends.setdefault(name, {}) or {}
    backends[name] = section
    return section


def env_name(loc: tuple) -> str:
    """The environment variable of a config location, for error messages."""
    parts = [str(part) for part in loc]
    if len(parts) >= 3 and parts[0] == "model_backends":
        return f"{BACKENDS_PREFIX}{parts[1].upper()}__{parts[2].upper()}"
    if len(parts) >= 2 and parts[0] == "main_backend":
        return GATEWAY_PREFIX + parts[1].upper()
    return ""


def _scalar(var: str, text: str) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError as exc:
        raise ConfigError(f"environment variable {var}: cannot parse {text!r}: {exc}") from None


def load_config(
    path: str | Path | None, env: Mapping[str, str] | None = None, flags: Mapping[str, str] | None = None
) -> Config:
    """YAML file < environment < command-line `flags` (main_backend keys); ConfigError names the key."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {p}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p} is not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping at the top level")
        raw = loaded
    raw = _apply_env(raw, env)
    for key, text in (flags or {}).items():
        raw["main_backend"][key] = _scalar(f"--{key.replace('_', '-')}", text)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_problem(err) for err in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from None


def _problem(err: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in err["loc"])
    env = env_name(err["loc"])
    given = f", got {err['input']!r}" if "input" in err and not isinstance(err["input"], dict) else ""
    return f"{where}{f' ({env})' if env else ''}: {err['msg']}{given}"
