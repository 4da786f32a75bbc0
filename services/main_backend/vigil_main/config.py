"""Main backend configuration: config/models.yaml (the seed's keys) validated with pydantic,
every key overridable by environment variables (compose uses them).

Env overrides: VIGIL_<BACKEND>_<KEY>, e.g. VIGIL_FATIGUE_HOST=fatigue, VIGIL_EEG_ENABLED=false;
VIGIL_MAIN_<KEY> for the `main_backend` section.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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
    # Replicas (vigil_main.replicas): every address `host` resolves to is one replica, unless
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


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Overlay VIGIL_<SECTION>_<KEY> variables; values are parsed as YAML scalars (true, 5, 1.5)."""
    backends = raw.setdefault("model_backends", {}) or {}
    raw["model_backends"] = backends
    main = raw.setdefault("main_backend", {}) or {}
    raw["main_backend"] = main
    for var, text in env.items():
        if not var.startswith("VIGIL_"):
            continue
        rest = var[len("VIGIL_") :].lower()
        if rest.startswith("main_"):
            key = rest[len("main_") :]
            if key in MainBackendConfig.model_fields:
                main[key] = _scalar(var, text)
            continue
        for name in sorted(set(backends) | set(DEFAULT_INPUTS), key=len, reverse=True):
            prefix = name + "_"
            if rest.startswith(prefix) and rest[len(prefix) :] in BackendConfig.model_fields:
                section = backends.setdefault(name, {}) or {}
                backends[name] = section
                section[rest[len(prefix) :]] = _scalar(var, text)
                break
    return raw


def _scalar(var: str, text: str) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError as exc:
        raise ConfigError(f"environment variable {var}: cannot parse {text!r}: {exc}") from None


def load_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> Config:
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
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(part) for part in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from None
