"""One settings layer for every vigil service (pydantic-settings).

`ServiceSettings` holds what every model backend has — where it listens, its limits, logging,
threads, device — and each service extends it with its own model section as flat fields:

    class EEGSettings(ServiceSettings):
        model_config = service_config("EEG")      # env prefix VIGIL_EEG_
        port: int = 8769
        line_freq: float = 50.0

Every field is, lowest priority first: its default, a YAML file (`--config FILE` or
`VIGIL_<SERVICE>_CONFIG`), an environment variable `VIGIL_<SERVICE>_<FIELD>`, a command-line flag
`--<field-name>` (generated from the same model). Names used before this layer (the unprefixed
`VIGIL_MAX_QUEUE`, `VIGIL_HOST`, ... and a few service-specific ones) still work for one release
and log a deprecation warning. Any bad value, from any source, ends the process with one message
per problem and exit code 2 (`load_settings`).
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    CliApp,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from .auth import parse_tokens
from .limits import (
    DEFAULT_BACKEND_MAX_IN_FLIGHT_PER_CONNECTION,
    DEFAULT_BACKEND_MAX_PENDING_BYTES,
    DEFAULT_GRACE_PERIOD,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_QUEUE,
    DEFAULT_REQUEST_TIMEOUT,
)

logger = logging.getLogger(__name__)

S = TypeVar("S", bound="ServiceSettings")
EXIT_BAD_SETTINGS = 2

# The YAML file of the settings being loaded (set by load_settings around construction).
_config_file: contextvars.ContextVar[str | None] = contextvars.ContextVar("vigil_config_file", default=None)


def service_config(service: str, **extra: Any) -> SettingsConfigDict:
    """The pydantic-settings config of one service: env prefix VIGIL_<SERVICE>_, strict fields."""
    return SettingsConfigDict(
        env_prefix=f"VIGIL_{service.upper()}_",
        extra="forbid",
        frozen=True,
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_prog_name=f"vigil-{service.lower()}",
        validate_default=True,
        **extra,
    )


class ServiceSettings(BaseSettings):
    """What every model backend has: where it listens, its limits, logging, threads, device."""

    model_config = service_config("SERVICE")
    # Unprefixed names of the first releases -> field (accepted with a deprecation warning).
    legacy_env: ClassVar[dict[str, str]] = {
        "VIGIL_HOST": "host",
        "VIGIL_PORT": "port",
        "VIGIL_MAX_CONCURRENCY": "max_concurrency",
        "VIGIL_MAX_QUEUE": "max_queue",
        "VIGIL_REQUEST_TIMEOUT": "request_timeout",
        "VIGIL_MAX_MESSAGE_SIZE": "max_message_size",
        "VIGIL_GRACE_PERIOD": "grace_period",
        "VIGIL_STRICT": "exit_on_init_failure",
        "VIGIL_MAX_BATCH_SIZE": "max_batch_size",
        "VIGIL_MAX_QUEUE_DELAY_MS": "max_queue_delay_ms",
        "VIGIL_THREADS": "threads",
        "VIGIL_DEVICE": "device",
    }
    # Stack-wide defaults (one variable for every container), below the service's own names.
    shared_env: ClassVar[dict[str, str]] = {"VIGIL_LOG_LEVEL": "log_level", "VIGIL_LOG_FORMAT": "log_format"}

    host: str = Field("localhost", description="address to bind")
    port: int = Field(0, ge=0, le=65535, description="port to bind (0: any free port)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level")
    log_format: Literal["text", "json"] = Field("text", description="text for a terminal, json for collectors")
    device: str = Field("cpu", description="torch device of the model: cpu, cuda, cuda:N (if the model uses one)")
    threads: int | None = Field(
        None, ge=1, description="threads for torch/BLAS/OpenCV; unset: derived from the container's CPU quota"
    )
    max_concurrency: int = Field(DEFAULT_MAX_CONCURRENCY, ge=1, description="model calls running at once")
    max_queue: int = Field(DEFAULT_MAX_QUEUE, ge=0, description="requests waiting for a worker before 'overloaded'")
    request_timeout: float = Field(DEFAULT_REQUEST_TIMEOUT, gt=0, description="seconds before 'timeout'")
    max_batch_size: int = Field(1, ge=1, description="requests per model call (dynamic batching when > 1)")
    max_queue_delay_ms: float = Field(0.0, ge=0, description="how long a request may wait to share a batch")
    max_message_size: int = Field(
        DEFAULT_MAX_MESSAGE_SIZE, ge=1024, description="bytes per frame; larger frames close the connection (1009)"
    )
    max_connections: int = Field(DEFAULT_MAX_CONNECTIONS, ge=1, description="open connections; more get HTTP 503")
    max_in_flight_per_connection: int = Field(
        DEFAULT_BACKEND_MAX_IN_FLIGHT_PER_CONNECTION,
        ge=1,
        description="unanswered requests per connection (the main backend multiplexes all clients on one)",
    )
    max_pending_bytes: int = Field(
        DEFAULT_BACKEND_MAX_PENDING_BYTES,
        ge=1024,
        description="bytes of unanswered requests in the process, as decoded (a request beyond it is bad_request)",
    )
    max_pending_bytes_per_connection: int = Field(
        DEFAULT_BACKEND_MAX_PENDING_BYTES,
        ge=1024,
        description="bytes of unanswered requests per connection (as much as the process: the main backend "
        "multiplexes every client on its one connection)",
    )
    grace_period: float = Field(DEFAULT_GRACE_PERIOD, ge=0, description="seconds to finish in-flight work on SIGTERM")
    exit_on_init_failure: bool = Field(
        False, description="exit non-zero when the model cannot be loaded (default: stay up, report unhealthy)"
    )
    # ---- hot reload (shared_protocol.reload) --------------------------------------------------
    model_history: int = Field(5, ge=1, description="model versions kept known for reload_model rollback")
    model_poll_interval_s: float = Field(
        0.0, ge=0, description="seconds between checks of the model path for new files (0: no polling)"
    )
    model_repository: str | None = Field(
        None, description="directory reload_model paths must lie in (unset: the live model's parent directory)"
    )
    max_reload_memory_bytes: int | None = Field(
        None, ge=1, description="refuse a reload when memory in use plus the new model would pass this (bytes)"
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _FallbackEnvSource(settings_cls), _YamlSource(settings_cls))

    def backend_kwargs(self) -> dict[str, Any]:
        """The BaseModelBackend constructor arguments these settings give."""
        from .server import ServerLimits

        return {
            "max_concurrency": self.max_concurrency,
            "max_queue": self.max_queue,
            "request_timeout": self.request_timeout,
            "max_message_size": self.max_message_size,
            "grace_period": self.grace_period,
            "exit_on_init_failure": self.exit_on_init_failure,
            "max_batch_size": self.max_batch_size,
            "max_queue_delay_ms": self.max_queue_delay_ms,
            "threads": self.threads,
            "model_history": self.model_history,
            "model_poll_interval_s": self.model_poll_interval_s,
            "model_repository": self.model_repository,
            "max_reload_memory_bytes": self.max_reload_memory_bytes,
            # A secret: from the environment only (a flag would show in `ps`, a field in logs).
            "api_tokens": parse_tokens(os.environ.get("VIGIL_API_TOKENS")),
            "server_limits": ServerLimits(
                max_connections=self.max_connections,
                max_in_flight_per_connection=self.max_in_flight_per_connection,
                max_pending_bytes=self.max_pending_bytes,
                max_pending_bytes_per_connection=self.max_pending_bytes_per_connection,
            ),
        }


class _FallbackEnvSource(PydanticBaseSettingsSource):
    """Deprecated names (with a warning) and stack-wide defaults such as VIGIL_LOG_LEVEL."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        cls = self.settings_cls
        prefix = cls.model_config.get("env_prefix", "")
        for table, deprecated in ((getattr(cls, "shared_env", {}), False), (getattr(cls, "legacy_env", {}), True)):
            for var, field in table.items():
                if field not in cls.model_fields or var not in os.environ or (prefix + field.upper()) in os.environ:
                    continue
                values.setdefault(field, os.environ[var])
                if deprecated:
                    logger.warning("%s is deprecated and will be removed: use %s", var, prefix + field.upper())
        return values


class _YamlSource(PydanticBaseSettingsSource):
    """The YAML file named by --config or VIGIL_<SERVICE>_CONFIG: a mapping of field -> value."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _config_file.get()
        if not path:
            return {}
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SettingsError(f"config file {path}: {exc}") from None
        if not isinstance(loaded, dict):
            raise SettingsError(f"config file {path}: expected a mapping of settings, got {type(loaded).__name__}")
        return loaded


def load_settings(cls: type[S], argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None) -> S:
    """Settings from defaults, YAML, env and the command line; exits with code 2 on any bad value."""
    args = list(sys.argv[1:] if argv is None else argv)
    prefix = cls.model_config.get("env_prefix", "VIGIL_")
    env = os.environ if environ is None else environ
    config_file, args = _take_config_flag(args)
    token = _config_file.set(config_file or env.get(f"{prefix}CONFIG") or None)
    try:
        return CliApp.run(cls, cli_args=args)
    except (ValidationError, SettingsError) as exc:
        print(format_settings_error(cls, exc), file=sys.stderr)
        raise SystemExit(EXIT_BAD_SETTINGS) from None
    finally:
        _config_file.reset(token)


def _take_config_flag(args: list[str]) -> tuple[str | None, list[str]]:
    rest: list[str] = []
    config: str | None = None
    i = 0
    while i < len(args):
        if args[i] == "--config" and i + 1 < len(args):
            config = args[i + 1]
            i += 2
            continue
        if args[i].startswith("--config="):
            config = args[i].split("=", 1)[1]
        else:
            rest.append(args[i])
        i += 1
    return config, rest


def format_settings_error(cls: type[BaseSettings], exc: Exception) -> str:
    """One line per problem, naming the setting, its flag and its env var."""
    prog = cls.model_config.get("cli_prog_name") or cls.__name__
    if not isinstance(exc, ValidationError):
        return f"{prog}: bad settings: {exc}"
    prefix = cls.model_config.get("env_prefix", "")
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "settings"
        where = f" (--{field.replace('_', '-')} / {prefix}{field.upper()})" if field in cls.model_fields else ""
        given = f", got {error['input']!r}" if "input" in error and not isinstance(error["input"], dict) else ""
        lines.append(f"{prog}: bad setting '{field}'{where}: {error['msg']}{given}")
    return "\n".join(lines)


def settings_table(cls: type[BaseSettings]) -> list[tuple[str, str, str, str, str]]:
    """(name, flag, env var, default, meaning) per field: the source of docs/configuration.md."""
    prefix = cls.model_config.get("env_prefix", "")
    rows = []
    for name, field in cls.model_fields.items():
        default = "(required)" if field.is_required() else repr(field.get_default(call_default_factory=True))
        rows.append((name, f"--{name.replace('_', '-')}", prefix + name.upper(), default, field.description or ""))
    return rows
