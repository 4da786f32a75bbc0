"""Size and structure of `data.eeg` are checked before any array is built or any base64 decoded.

A frame of a few million JSON numbers (or a `shape` that promises them) must cost the service
nothing beyond the frame itself: the refusal comes from lengths alone.
"""

from __future__ import annotations

import base64
import math
import tracemalloc

import numpy as np
import pytest

from shared_protocol.errors import BadRequestError
from vigil_eeg import payload
from vigil_eeg.payload import MAX_CHUNK_VALUES, parse_request

SFREQ = 256.0


def _names(n: int) -> list[str]:
    return [f"E{i}" for i in range(n)]


def _list_request(rows, n_channels: int | None = None) -> dict:
    n = len(rows) if n_channels is None else n_channels
    return {"eeg": {"sfreq": SFREQ, "ch_names": _names(n), "unit": "uV", "data": rows}}


def _b64_request(samples: np.ndarray, dtype: str | None = None, **changes) -> dict:
    np_dtype = "<f8" if dtype == "float64" else "<f4"
    eeg = {
        "sfreq": SFREQ,
        "ch_names": _names(samples.shape[0]),
        "unit": "uV",
        "data_b64": base64.b64encode(np.ascontiguousarray(samples, dtype=np_dtype).tobytes()).decode("ascii"),
        "shape": list(samples.shape),
    }
    if dtype is not None:
        eeg["dtype"] = dtype
    eeg.update(changes)
    return {"eeg": eeg}


def _signal(n_channels: int = 4, n_samples: int = 64) -> np.ndarray:
    return np.sin(np.arange(n_channels * n_samples, dtype=np.float64) / 7.0).reshape(n_channels, n_samples) * 20.0


class _Forbidden:
    """Stands in for a module inside payload: the named functions fail the test when called."""

    def __init__(self, module, names):
        self._module, self._names = module, set(names)

    def __getattr__(self, name):
        if name in self._names:

            def refuse(*args, **kwargs):
                pytest.fail(f"{self._module.__name__}.{name} was called before the size was checked")

            return refuse
        return getattr(self._module, name)


@pytest.fixture
def no_arrays(monkeypatch):
    array_builders = ("array", "asarray", "asanyarray", "ascontiguousarray", "frombuffer", "fromiter", "stack")
    monkeypatch.setattr(payload, "np", _Forbidden(np, array_builders))
    monkeypatch.setattr(payload, "base64", _Forbidden(base64, ("b64decode", "standard_b64decode")))


# ---- oversize: refused from lengths alone ----


def _oversize_cases():
    row = [0.0] * 16384  # the same row object repeated: a huge request that is cheap to build here
    return [
        ("total values", _list_request([row] * 256), f"256 x 16384 = 4194304 values; at most {MAX_CHUNK_VALUES}"),
        ("samples per channel", _list_request([[0.0] * 16385] * 2), "16385 samples per channel; at most 16384"),
        ("rows vs ch_names", _list_request([[0.0]] * 300, n_channels=2), "300 channels but 'data.eeg.ch_names' has 2"),
        (
            "b64 shape total",
            _b64_request(_signal(256, 1), shape=[256, 16384], data_b64="AAAA"),
            "256 x 16384 = 4194304 values",
        ),
        ("b64 shape samples", _b64_request(_signal(2, 1), shape=[2, 10**9]), "exceeds the limits"),
        (
            "b64 text longer than the shape",
            _b64_request(_signal(4, 64), data_b64="A" * 8_000_000),
            "8000000 base64 characters; shape [4, 64] of float32 is 1024 bytes = 1368 characters",
        ),
        (
            "b64 text shorter than the shape",
            _b64_request(_signal(4, 64), shape=[4, 65]),
            "1368 base64 characters; shape [4, 65] of float32 is 1040 bytes = 1388 characters",
        ),
    ]


@pytest.mark.parametrize(("label", "data", "message"), _oversize_cases(), ids=[c[0] for c in _oversize_cases()])
def test_oversize_is_refused_before_any_array_or_decode(no_arrays, label, data, message):
    with pytest.raises(BadRequestError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_request(data, payload.EEGSettings())


def test_oversize_list_costs_no_memory():
    data = _list_request([[0.0] * 16384] * 256)  # 4.2 M values: 32 MB as float64 had it been built
    tracemalloc.start()
    try:
        with pytest.raises(BadRequestError, match="values; at most"):
            parse_request(data, payload.EEGSettings())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak


def test_oversize_b64_costs_no_memory():
    n = 256 * 16384
    data = _b64_request(_signal(256, 1), shape=[256, 16384], data_b64="A" * (math.ceil(n * 4 / 3 / 4) * 4))
    tracemalloc.start()
    try:
        with pytest.raises(BadRequestError, match="values; at most"):
            parse_request(data, payload.EEGSettings())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak  # the 22 MB of text was neither decoded (16 MB) nor widened (32 MB)


def test_largest_allowed_chunk_is_accepted():
    n_channels = 128
    n_samples = MAX_CHUNK_VALUES // n_channels
    data = _b64_request(np.zeros((n_channels, n_samples), np.float32))
    data["eeg"]["sfreq"] = 80.0  # keeps channels x 4 s window under max_window_values
    chunk = parse_request(data, payload.EEGSettings())
    assert chunk.samples_uv.shape == (n_channels, n_samples)


# ---- structure of the list form ----


@pytest.mark.parametrize(
    ("rows", "n_channels", "message"),
    [
        ([[[1.0]], [[2.0]]], None, r"'data.eeg.data\[0\]\[0\]' must be a number, got list"),
        ([[1.0, 2.0], [3.0, [4.0]]], None, r"'data.eeg.data\[1\]\[1\]' must be a number, got list"),
        ([1.0, 2.0], None, r"'data.eeg.data\[0\]' must be a list of samples .*got float"),
        ([[1.0, 2.0], 3.0], None, r"'data.eeg.data\[1\]' must be a list of samples .*got float"),
        ([[1.0, 2.0], {"a": 1}], None, r"'data.eeg.data\[1\]' must be a list of samples .*got dict"),
        ([[1.0, "2.0"], [3.0, 4.0]], None, r"'data.eeg.data\[0\]\[1\]' must be a number, got str"),
        ([[1.0, 2.0], [None, 4.0]], None, r"'data.eeg.data\[1\]\[0\]' must be a number, got null"),
        ([[1.0, True], [3.0, 4.0]], None, r"'data.eeg.data\[0\]\[1\]' must be a number, got bool"),
        ([[1.0, float("nan")], [3.0, 4.0]], None, r"'data.eeg.data\[0\]\[1\]' is nan: NaN or infinite"),
        ([[1.0, 2.0], [float("-inf"), 4.0]], None, r"'data.eeg.data\[1\]\[0\]' is -inf: NaN or infinite"),
        ([[1.0, 10**400], [3.0, 4.0]], None, "integer too large"),
        ([[1.0, 2.0, 3.0], [4.0, 5.0]], None, r"'data.eeg.data\[1\]' has 2 samples but 'data.eeg.data\[0\]' has 3"),
        ([[], []], None, "holds no samples"),
        ("1,2", 2, "must be a non-empty list of channel lists"),
    ],
)
def test_list_structure_errors_name_the_position(rows, n_channels, message):
    with pytest.raises(BadRequestError, match=message):
        parse_request(_list_request(rows, n_channels), payload.EEGSettings())


def test_integers_are_samples_too():
    chunk = parse_request(_list_request([[1, -2], [3, 2**70]]), payload.EEGSettings())
    np.testing.assert_array_equal(chunk.samples_uv, [[1.0, -2.0], [3.0, float(2**70)]])


# ---- the base64 form ----


def test_b64_nan_names_channel_and_sample():
    x = _signal()
    x[2, 17] = np.nan
    with pytest.raises(BadRequestError, match=r"'data.eeg.data_b64' \(channel 2, sample 17\) is nan"):
        parse_request(_b64_request(x), payload.EEGSettings())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_b64_dtypes_decode(dtype):
    x = _signal()
    chunk = parse_request(_b64_request(x, dtype=dtype), payload.EEGSettings())
    expected = x.astype(np.float32).astype(np.float64) if dtype == "float32" else x
    np.testing.assert_array_equal(chunk.samples_uv, expected)


@pytest.mark.parametrize("dtype", ["int16", "float16", ">f4", "<f4", "FLOAT32", "", 32, None, ["float32"]])
def test_b64_unknown_dtype_names_are_refused(dtype):
    data = _b64_request(_signal())
    data["eeg"]["dtype"] = dtype
    with pytest.raises(BadRequestError, match=r"'data.eeg.dtype' must be one of \['float32', 'float64'\]"):
        parse_request(data, payload.EEGSettings())


def test_b64_float64_bytes_sent_as_float32_are_refused_by_length():
    data = _b64_request(_signal(), dtype="float64")
    del data["eeg"]["dtype"]
    with pytest.raises(BadRequestError, match="2732 base64 characters; shape \\[4, 64\\] of float32 is 1024 bytes"):
        parse_request(data, payload.EEGSettings())


def test_b64_right_length_but_not_base64():
    data = _b64_request(_signal())
    text = data["eeg"]["data_b64"]
    data["eeg"]["data_b64"] = "@" + text[1:]
    with pytest.raises(BadRequestError, match="'data.eeg.data_b64' is not valid base64"):
        parse_request(data, payload.EEGSettings())


def test_b64_unpadded_text_of_the_padded_length_is_refused():
    x = _signal(1, 1)  # 4 bytes -> "xxxxxx==" (8 characters)
    data = _b64_request(x)
    text = data["eeg"]["data_b64"]
    assert text.endswith("==")
    data["eeg"]["data_b64"] = text[:-2] + "AA"  # 8 characters that decode to 6 bytes
    with pytest.raises(BadRequestError, match="decodes to 6 bytes; shape \\[1, 1\\] of float32 needs 4"):
        parse_request(data, payload.EEGSettings())
