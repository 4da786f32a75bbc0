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
from shared_protocol.fields import LOCAL_OWNER, CommonFields, common_fields
from shared_protocol.sessions import SessionKey

from .settings import EEGSettings

# Units accepted in `eeg.unit` -> factor to microvolts.
UNIT_TO_UV = {"V": 1e6, "mV": 1e3, "uV": 1.0, "µV": 1.0, "μV": 1.0}
# channels x samples of one request, checked before any array is built: 2 M values = 16 MB as
# float64 (a 4 s window of 256 channels at ~2 kHz). Not a setting yet (settings.py has no field).
MAX_CHUNK_VALUES = 2_000_000
# `eeg.dtype` of `data_b64` (little-endian, channel-major); float32 is the default and the wire norm.
B64_DTYPES = {"float32": np.dtype("<f4"), "float64": np.dtype("<f8")}
DEFAULT_B64_DTYPE = "float32"
_NUMBER_TYPES = frozenset((int, float))


@dataclass(frozen=True)
class EEGChunk:
    session_id: str
    timestamp: float | None  # seconds, time of the first sample
    reset_session: bool
    sfreq: float
    ch_names: tuple[str, ...]
    samples_uv: np.ndarray  # float64 (n_channels, n_samples)
    owner: str = LOCAL_OWNER  # the client connection the session belongs to (set by the server)

    @property
    def session_key(self) -> SessionKey:
        return (self.owner, self.session_id)


def parse_request(data: Any, settings: EEGSettings) -> EEGChunk:
    if not isinstance(data, dict):
        raise BadRequestError(f"'data' must be an object, got {type(data).__name__}")
    fields = _common_fields(data)
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
    return EEGChunk(
        fields.session_id, fields.timestamp, fields.reset_session, sfreq, ch_names, samples_uv, owner=fields.owner
    )


def _common_fields(data: dict) -> CommonFields:
    """session_id, timestamp, reset_session by the rule every backend shares (shared_protocol.fields)."""
    try:
        return common_fields(data)
    except BadRequestError as exc:
        # Same rule and wording, but named by path like every other field here: 'data.session_id'.
        raise BadRequestError(exc.message.replace("field '", "'data.", 1)) from None


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
    if has_list:
        return _samples_from_list(eeg["data"], n_channels, settings)
    return _samples_from_b64(eeg, n_channels, settings)


def _check_size(what: str, n_channels: int, declared_channels: int, n_samples: int, settings: EEGSettings) -> None:
    """Every bound on the chunk's size, checked before any array is built. `what` names the field."""
    if declared_channels != n_channels:
        raise BadRequestError(f"{what} has {declared_channels} channels but 'data.eeg.ch_names' has {n_channels}")
    if n_samples == 0:
        raise BadRequestError(f"{what} holds no samples")
    if n_samples > settings.max_chunk_samples:
        raise BadRequestError(
            f"{what} has {n_samples} samples per channel; at most {settings.max_chunk_samples} per request"
        )
    if n_channels * n_samples > MAX_CHUNK_VALUES:
        raise BadRequestError(
            f"{what} holds {n_channels} x {n_samples} = {n_channels * n_samples} values; "
            f"at most {MAX_CHUNK_VALUES} per request"
        )


def _samples_from_list(value: Any, n_channels: int, settings: EEGSettings) -> np.ndarray:
    field = "data.eeg.data"
    if not isinstance(value, list) or not value:
        raise BadRequestError(f"'{field}' must be a non-empty list of channel lists")
    # Shape first, from lengths alone (no element is looked at), so an oversize chunk costs nothing.
    first = value[0]
    if not isinstance(first, list):
        raise BadRequestError(f"'{field}[0]' must be a list of samples (one list per channel), got {_kind(first)}")
    _check_size(f"'{field}'", n_channels, len(value), len(first), settings)
    n_samples = len(first)
    for i, row in enumerate(value):
        if not isinstance(row, list):
            raise BadRequestError(f"'{field}[{i}]' must be a list of samples (one list per channel), got {_kind(row)}")
        if len(row) != n_samples:
            raise BadRequestError(f"'{field}[{i}]' has {len(row)} samples but '{field}[0]' has {n_samples}")
        # Exactly int or float: bool is an int subclass, and numpy would silently turn numeric
        # strings, nested lists or None into something (str/object arrays, NaN).
        if not set(map(type, row)) <= _NUMBER_TYPES:
            j = next(j for j, x in enumerate(row) if type(x) not in _NUMBER_TYPES)
            raise BadRequestError(f"'{field}[{i}][{j}]' must be a number, got {_kind(row[j])}")
    try:
        samples = np.array(value, dtype=np.float64)
    except OverflowError:  # a JSON integer beyond float64's range
        raise BadRequestError(f"'{field}' holds an integer too large for a float64 sample") from None
    _check_finite(samples, lambda i, j: f"'{field}[{i}][{j}]'")
    return samples


def _samples_from_b64(eeg: dict, n_channels: int, settings: EEGSettings) -> np.ndarray:
    field = "data.eeg.data_b64"
    shape = eeg.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
    ):
        raise BadRequestError("'data.eeg.shape' must be [n_channels, n_samples] (non-negative integers)")
    declared_channels, n_samples = shape
    if declared_channels > settings.max_channels or n_samples > settings.max_chunk_samples:
        raise BadRequestError(
            f"'data.eeg.shape' {shape} exceeds the limits of {settings.max_channels} channels x "
            f"{settings.max_chunk_samples} samples"
        )
    _check_size(f"'{field}' (shape {shape})", n_channels, declared_channels, n_samples, settings)
    dtype_name = eeg.get("dtype", DEFAULT_B64_DTYPE)
    if not isinstance(dtype_name, str) or dtype_name not in B64_DTYPES:
        raise BadRequestError(f"'data.eeg.dtype' must be one of {sorted(B64_DTYPES)}, got {dtype_name!r}")
    dtype = B64_DTYPES[dtype_name]
    text = eeg["data_b64"]
    expected = n_channels * n_samples * dtype.itemsize
    if isinstance(text, (bytes, bytearray)):  # the binary form (vigil.msgpack): the samples themselves
        if len(text) != expected:
            raise BadRequestError(f"'{field}' has {len(text)} bytes; shape {shape} of {dtype_name} needs {expected}")
        samples = np.frombuffer(bytes(text), dtype=dtype).reshape(n_channels, n_samples)
        _check_finite(samples, lambda i, j: f"'{field}' (channel {i}, sample {j})")
        return samples
    if not isinstance(text, str):
        raise BadRequestError(f"'{field}' must be a base64 string, got {_kind(text)}")
    expected_chars = (expected + 2) // 3 * 4  # padded base64; whitespace is refused below anyway
    if len(text) != expected_chars:  # checked on the text, so a wrong size is never decoded
        raise BadRequestError(
            f"'{field}' has {len(text)} base64 characters; shape {shape} of {dtype_name} is {expected} bytes "
            f"= {expected_chars} characters"
        )
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError(f"'{field}' is not valid base64") from None
    if len(raw) != expected:
        raise BadRequestError(f"'{field}' decodes to {len(raw)} bytes; shape {shape} of {dtype_name} needs {expected}")
    samples = np.frombuffer(raw, dtype=dtype).reshape(n_channels, n_samples)
    _check_finite(samples, lambda i, j: f"'{field}' (channel {i}, sample {j})")
    return samples


def _check_finite(samples: np.ndarray, where) -> None:
    finite = np.isfinite(samples)
    if not finite.all():
        i, j = np.argwhere(~finite)[0]
        raise BadRequestError(f"{where(int(i), int(j))} is {float(samples[i, j])}: NaN or infinite values are refused")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
