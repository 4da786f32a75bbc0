"""Validation and decoding of a request's `data`: session fields plus the `eeg` chunk.

Every problem raises BadRequestError naming the field, so a client sees what to fix and the
service stays up. Samples come back as float64 in microvolts, shape (n_channels, n_samples).
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared_protocol import BadRequestError

from .settings import EEGSettings

# Units accepted in `eeg.unit` -> factor to microvolts.
UNIT_TO_UV = {"V": 1e6, "mV": 1e3, "uV": 1.0, "µV": 1.0, "μV": 1.0}
DEFAULT_SESSION = "default"


@dataclass(frozen=True)
class EEGChunk:
    session_id: str
    timestamp: float | None  # seconds, time of the first sample
    reset_session: bool
    sfreq: float
    ch_names: tuple[str, ...]
    samples_uv: np.ndarray  # float64 (n_channels, n_samples)


def parse_request(data: Any, settings: EEGSettings) -> EEGChunk:
    if not isinstance(data, dict):
        raise BadRequestError(f"'data' must be an object, got {type(data).__name__}")
    session_id = _session_id(data.get("session_id", DEFAULT_SESSION), settings)
    timestamp = _optional_number(data.get("timestamp"), "data.timestamp")
    reset = data.get("reset_session", False)
    if not isinstance(reset, bool):
        raise BadRequestError(f"'data.reset_session' must be a boolean, got {type(reset).__name__}")
    eeg = data.get("eeg")
    if eeg is None:
        raise BadRequestError("missing field 'data.eeg' (object with sfreq, ch_names, unit and data or data_b64)")
    if not isinstance(eeg, dict):
        raise BadRequestError(f"'data.eeg' must be an object, got {type(eeg).__name__}")
    sfreq = _sfreq(eeg.get("sfreq"), settings)
    ch_names = _ch_names(eeg.get("ch_names"), settings)
    window_values = len(ch_names) * round(settings.window_s * sfreq)
    if window_values > settings.max_window_values:
        raise BadRequestError(
            f"'data.eeg.ch_names' ({len(ch_names)} channels) x 'data.eeg.sfreq' ({sfreq:g} Hz) x {settings.window_s:g} s "
            f"window = {window_values} values; at most {settings.max_window_values}"
        )
    scale = _unit_scale(eeg.get("unit"))
    samples = _samples(eeg, len(ch_names), settings)
    with np.errstate(over="ignore"):
        samples_uv = samples.astype(np.float64, copy=False) * scale
    if not np.isfinite(samples_uv).all():  # finite input can overflow when scaled (float32 volts*1e6 is safe)
        raise BadRequestError("'data.eeg' samples overflow when converted to microvolts")
    return EEGChunk(session_id, timestamp, reset, sfreq, ch_names, samples_uv)


def _session_id(value: Any, settings: EEGSettings) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequestError(f"'data.session_id' must be a non-empty string, got {type(value).__name__}")
    if len(value) > settings.max_session_id_length:
        raise BadRequestError(f"'data.session_id' is longer than {settings.max_session_id_length} characters")
    return value


def _optional_number(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequestError(f"'{field}' must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise BadRequestError(f"'{field}' must be finite")
    return float(value)


def _sfreq(value: Any, settings: EEGSettings) -> float:
    if value is None:
        raise BadRequestError("missing field 'data.eeg.sfreq' (sampling rate in Hz)")
    sfreq = _optional_number(value, "data.eeg.sfreq")
    if sfreq < settings.min_sfreq:
        raise BadRequestError(
            f"'data.eeg.sfreq' is {sfreq:g} Hz; at least {settings.min_sfreq:g} Hz is needed for the 1-40 Hz bands"
        )
    if sfreq > settings.max_sfreq:
        raise BadRequestError(f"'data.eeg.sfreq' is {sfreq:g} Hz; at most {settings.max_sfreq:g} Hz is accepted")
    return sfreq


def _ch_names(value: Any, settings: EEGSettings) -> tuple[str, ...]:
    if value is None:
        raise BadRequestError("missing field 'data.eeg.ch_names' (list of channel names)")
    if not isinstance(value, list) or not value:
        raise BadRequestError("'data.eeg.ch_names' must be a non-empty list of strings")
    if len(value) > settings.max_channels:
        raise BadRequestError(f"'data.eeg.ch_names' has {len(value)} channels; at most {settings.max_channels}")
    for i, name in enumerate(value):
        if not isinstance(name, str) or not name.strip():
            raise BadRequestError(f"'data.eeg.ch_names[{i}]' must be a non-empty string")
    if len(set(value)) != len(value):
        raise BadRequestError("'data.eeg.ch_names' contains duplicate names")
    return tuple(value)


def _unit_scale(value: Any) -> float:
    if value is None:
        raise BadRequestError("missing field 'data.eeg.unit' ('V' or 'uV')")
    if not isinstance(value, str) or value not in UNIT_TO_UV:
        raise BadRequestError(f"'data.eeg.unit' must be one of {sorted(UNIT_TO_UV)}, got {value!r}")
    return UNIT_TO_UV[value]


def _samples(eeg: dict, n_channels: int, settings: EEGSettings) -> np.ndarray:
    has_list, has_b64 = "data" in eeg, "data_b64" in eeg
    if has_list == has_b64:
        raise BadRequestError("'data.eeg' needs exactly one of 'data' (list of channel lists) or 'data_b64'")
    samples = _samples_from_list(eeg["data"]) if has_list else _samples_from_b64(eeg, settings)
    field = "data.eeg.data" if has_list else "data.eeg.data_b64"
    if samples.shape[0] != n_channels:
        raise BadRequestError(f"'{field}' has {samples.shape[0]} channels but 'data.eeg.ch_names' has {n_channels}")
    if samples.shape[1] == 0:
        raise BadRequestError(f"'{field}' holds no samples")
    if samples.shape[1] > settings.max_chunk_samples:
        raise BadRequestError(
            f"'{field}' has {samples.shape[1]} samples per channel; at most {settings.max_chunk_samples} per request"
        )
    if not np.isfinite(samples).all():
        raise BadRequestError(f"'{field}' contains NaN or infinite values")
    return samples


def _samples_from_list(value: Any) -> np.ndarray:
    if not isinstance(value, list) or not value:
        raise BadRequestError("'data.eeg.data' must be a non-empty list of channel lists")
    if not all(isinstance(row, list) for row in value):
        raise BadRequestError("'data.eeg.data' must be a list of lists (one list of samples per channel)")
    lengths = {len(row) for row in value}
    if len(lengths) != 1:
        raise BadRequestError(f"'data.eeg.data' channels differ in length: {sorted(lengths)}")
    try:
        array = np.array(value)
    except (ValueError, TypeError):
        raise BadRequestError("'data.eeg.data' must hold only numbers") from None
    # np.array turns numeric strings into str arrays and mixed junk into object arrays: refuse both.
    if array.ndim != 2 or array.dtype.kind not in "iuf":
        raise BadRequestError("'data.eeg.data' must hold only numbers")
    return array.astype(np.float64, copy=False)


def _samples_from_b64(eeg: dict, settings: EEGSettings) -> np.ndarray:
    shape = eeg.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
    ):
        raise BadRequestError("'data.eeg.shape' must be [n_channels, n_samples] (non-negative integers)")
    n_channels, n_samples = shape
    if n_channels > settings.max_channels or n_samples > settings.max_chunk_samples:
        raise BadRequestError(
            f"'data.eeg.shape' {shape} exceeds the limits of {settings.max_channels} channels x "
            f"{settings.max_chunk_samples} samples"
        )
    text = eeg["data_b64"]
    if not isinstance(text, str):
        raise BadRequestError(f"'data.eeg.data_b64' must be a base64 string, got {type(text).__name__}")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError("'data.eeg.data_b64' is not valid base64") from None
    expected = n_channels * n_samples * 4
    if len(raw) != expected:
        raise BadRequestError(
            f"'data.eeg.data_b64' decodes to {len(raw)} bytes; shape {shape} of float32 needs {expected}"
        )
    return np.frombuffer(raw, dtype="<f4").reshape(n_channels, n_samples)
