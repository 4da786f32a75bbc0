"""Sample request payloads for the EEG backend (docs/CONTRACTS.md): one valid, many bad.

numpy + stdlib only, so the container tests can import it without the service's deps.
"""

from __future__ import annotations

import base64

import numpy as np

SFREQ = 128.0
CH_NAMES = ["AF3", "F7", "F3", "FC5", "T7", "P7", "O1", "O2", "P8", "T8", "FC6", "F4", "F8", "AF4"]  # Emotiv EPOC
WINDOW_S = 4.0


def synthetic_eeg_uv(n_channels: int = len(CH_NAMES), sfreq: float = SFREQ, seconds: float = WINDOW_S) -> np.ndarray:
    """Deterministic EEG-like signal in µV: 10 Hz alpha + 6 Hz theta + 20 Hz beta + white noise."""
    rng = np.random.default_rng(1234)
    t = np.arange(round(sfreq * seconds)) / sfreq
    rhythms = 20 * np.sin(2 * np.pi * 10 * t) + 10 * np.sin(2 * np.pi * 6 * t) + 5 * np.sin(2 * np.pi * 20 * t)
    return rhythms[None, :] + rng.normal(0.0, 5.0, (n_channels, t.size))


def encode_b64(samples: np.ndarray) -> str:
    """Little-endian float32, channel-major, as the wire format wants."""
    return base64.b64encode(np.ascontiguousarray(samples, dtype="<f4").tobytes()).decode("ascii")


def eeg_payload_b64(samples: np.ndarray, ch_names: list[str], sfreq: float = SFREQ, unit: str = "uV") -> dict:
    return {
        "sfreq": sfreq,
        "ch_names": list(ch_names),
        "unit": unit,
        "data_b64": encode_b64(samples),
        "shape": list(samples.shape),
    }


def valid_data() -> dict:
    """A full 4 s window of 14 channels at 128 Hz: analysed at once."""
    return {
        "session_id": "samples-valid",
        "timestamp": 1000.0,
        "eeg": eeg_payload_b64(synthetic_eeg_uv(), CH_NAMES),
    }


def _with_eeg(**changes) -> dict:
    eeg = eeg_payload_b64(synthetic_eeg_uv(seconds=0.5), CH_NAMES)
    for key, value in changes.items():
        if value is _DROP:
            eeg.pop(key, None)
        else:
            eeg[key] = value
    return {"session_id": "samples-bad", "timestamp": 5.0, "eeg": eeg}


_DROP = object()


def _list_eeg(rows) -> dict:
    return {"session_id": "samples-bad", "eeg": {"sfreq": SFREQ, "ch_names": ["Fz", "Cz"], "unit": "uV", "data": rows}}


def bad_inputs() -> list[tuple[str, dict]]:
    n = len(CH_NAMES)
    half_second = synthetic_eeg_uv(seconds=0.5)
    with_nan = half_second.copy()
    with_nan[3, 10] = np.nan
    with_inf = half_second.copy()
    with_inf[0, 0] = np.inf
    good_b64 = encode_b64(half_second)
    return [
        ("eeg missing", {"session_id": "samples-bad", "timestamp": 1.0}),
        ("eeg not an object", {"eeg": [1, 2, 3]}),
        ("sfreq missing", _with_eeg(sfreq=_DROP)),
        ("sfreq not a number", _with_eeg(sfreq="128")),
        ("sfreq boolean", _with_eeg(sfreq=True)),
        ("sfreq below 80 Hz", _with_eeg(sfreq=64)),
        ("sfreq absurdly high", _with_eeg(sfreq=1e7)),
        ("ch_names missing", _with_eeg(ch_names=_DROP)),
        ("ch_names not a list", _with_eeg(ch_names="AF3,F7")),
        ("ch_names empty", _with_eeg(ch_names=[])),
        ("ch_names non-string entry", _with_eeg(ch_names=[*CH_NAMES[:-1], 7])),
        ("ch_names duplicates", _with_eeg(ch_names=[*CH_NAMES[:-1], CH_NAMES[0]])),
        ("ch_names too many", _with_eeg(ch_names=[f"E{i}" for i in range(1000)])),
        (
            "ch_names x sfreq beyond the window buffer limit",
            _with_eeg(
                sfreq=4000.0,
                ch_names=[f"E{i}" for i in range(200)],
                data_b64=encode_b64(np.zeros((200, 4))),
                shape=[200, 4],
            ),
        ),
        ("unit missing", _with_eeg(unit=_DROP)),
        ("unit unknown", _with_eeg(unit="volts")),
        ("both data and data_b64", _with_eeg(data=half_second.tolist())),
        ("neither data nor data_b64", _with_eeg(data_b64=_DROP)),
        ("shape vs ch_names mismatch (b64)", _with_eeg(ch_names=CH_NAMES[:-1])),
        ("shape missing", _with_eeg(shape=_DROP)),
        ("shape not two integers", _with_eeg(shape=[n, 64, 1])),
        ("shape negative", _with_eeg(shape=[n, -64])),
        ("shape beyond max samples", _with_eeg(shape=[n, 10_000_000])),
        ("data_b64 not a string", _with_eeg(data_b64=12345)),
        ("data_b64 not base64", _with_eeg(data_b64="@@not-base64@@")),
        ("data_b64 length vs shape", _with_eeg(data_b64=good_b64[: len(good_b64) // 2])),
        ("data_b64 empty", _with_eeg(data_b64="", shape=[n, 0])),
        ("data_b64 with NaN", _with_eeg(data_b64=encode_b64(with_nan))),
        ("data_b64 with inf", _with_eeg(data_b64=encode_b64(with_inf))),
        ("data not a list", _list_eeg("1,2,3")),
        ("data empty", _list_eeg([])),
        ("data rows vs ch_names mismatch", _list_eeg([[1.0, 2.0, 3.0]])),
        ("data ragged", _list_eeg([[1.0, 2.0, 3.0], [1.0, 2.0]])),
        ("data no samples", _list_eeg([[], []])),
        ("data non-numeric", _list_eeg([["a", "b"], ["c", "d"]])),
        ("data nested too deep", _list_eeg([[[1.0]], [[2.0]]])),
        ("data with NaN", _list_eeg([[1.0, float("nan")], [1.0, 2.0]])),
        ("data with inf", _list_eeg([[1.0, float("inf")], [1.0, 2.0]])),
        ("data too many samples", _list_eeg([[0.0] * 20000, [0.0] * 20000])),
        ("timestamp not a number", {**_with_eeg(), "timestamp": "now"}),
        ("session_id not a string", {**_with_eeg(), "session_id": 42}),
        ("session_id empty", {**_with_eeg(), "session_id": ""}),
        ("reset_session not a boolean", {**_with_eeg(), "reset_session": "yes"}),
    ]
