from __future__ import annotations

import numpy as np
import pytest
from eeg import samples

from shared_protocol.errors import BadRequestError
from vigil_eeg.payload import parse_request


def test_valid_sample_decodes(settings):
    chunk = parse_request(samples.valid_data(), settings)
    assert chunk.session_id == "samples-valid"
    assert chunk.timestamp == 1000.0
    assert chunk.sfreq == 128.0
    assert chunk.ch_names == tuple(samples.CH_NAMES)
    expected = samples.synthetic_eeg_uv().astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(chunk.samples_uv, expected)


def test_list_and_b64_forms_decode_to_the_same_samples(settings):
    x = samples.synthetic_eeg_uv(seconds=0.5).astype(np.float32)
    eeg_b64 = samples.eeg_payload_b64(x, samples.CH_NAMES)
    eeg_list = {k: v for k, v in eeg_b64.items() if k not in ("data_b64", "shape")}
    eeg_list["data"] = x.astype(np.float64).tolist()
    a = parse_request({"eeg": eeg_b64}, settings)
    b = parse_request({"eeg": eeg_list}, settings)
    np.testing.assert_array_equal(a.samples_uv, b.samples_uv)
    assert a.session_id == b.session_id == "default"
    assert a.timestamp is None and a.reset_session is False


@pytest.mark.parametrize(("unit", "factor"), [("V", 1e6), ("uV", 1.0), ("µV", 1.0), ("mV", 1e3)])
def test_units_convert_to_microvolts(settings, unit, factor):
    data = {"eeg": {"sfreq": 256, "ch_names": ["Cz"], "unit": unit, "data": [[1e-5, -2e-5, 3e-5]]}}
    chunk = parse_request(data, settings)
    np.testing.assert_allclose(chunk.samples_uv, np.array([[1e-5, -2e-5, 3e-5]]) * factor)


def test_data_that_is_not_a_dict_is_refused(settings):
    with pytest.raises(BadRequestError, match="'data' must be an object"):
        parse_request([1, 2], settings)


# Every bad sample must fail with a message that names the offending field.
FIELD_OF = {
    "eeg missing": "data.eeg",
    "eeg not an object": "data.eeg",
    "sfreq": "data.eeg.sfreq",
    "ch_names": "data.eeg.ch_names",
    "unit": "data.eeg.unit",
    "both data": "data.eeg",
    "neither": "data.eeg",
    "shape vs ch_names": "data.eeg.data_b64",
    "shape": "data.eeg.shape",
    "data_b64": "data.eeg.data_b64",
    "data": "data.eeg.data",
    "timestamp": "data.timestamp",
    "session_id": "data.session_id",
    "reset_session": "data.reset_session",
}


def _expected_field(label: str) -> str:
    for prefix in sorted(FIELD_OF, key=len, reverse=True):
        if label.startswith(prefix):
            return FIELD_OF[prefix]
    raise AssertionError(f"no field known for sample {label!r}")


@pytest.mark.parametrize(("label", "data"), samples.bad_inputs(), ids=[label for label, _ in samples.bad_inputs()])
def test_every_bad_sample_is_a_bad_request_naming_the_field(settings, label, data):
    with pytest.raises(BadRequestError) as info:
        parse_request(data, settings)
    assert _expected_field(label) in str(info.value), str(info.value)


def test_bad_inputs_cover_every_input_field():
    labels = " | ".join(label for label, _ in samples.bad_inputs())
    for field in (
        "sfreq",
        "ch_names",
        "unit",
        "data_b64",
        "shape",
        "data ",
        "timestamp",
        "session_id",
        "reset_session",
    ):
        assert field in labels, field


def test_overflowing_volts_are_refused(settings):
    data = {"eeg": {"sfreq": 256, "ch_names": ["Cz"], "unit": "V", "data": [[1e305, 0.0]]}}
    with pytest.raises(BadRequestError, match="overflow"):
        parse_request(data, settings)


def test_session_id_length_limit(settings):
    data = {"session_id": "x" * 200, "eeg": {"sfreq": 256, "ch_names": ["Cz"], "unit": "uV", "data": [[0.0]]}}
    with pytest.raises(BadRequestError, match="data.session_id"):
        parse_request(data, settings)
