"""A second (hostile) client cannot read, reset, evict or write the first client's EEG session.

In process: the backend gets each request's `data` as a RequestData whose owner names the client
connection (the server sets it; here owners "a" and "b"), exactly as the base class hands it over.
"""

from __future__ import annotations

import numpy as np
import pytest
from eeg import samples

from shared_protocol.errors import BadRequestError, ErrorCode, ProtocolError
from shared_protocol.fields import RequestData, session_id_field
from vigil_eeg.backend import EEGBackend
from vigil_eeg.settings import EEGSettings

HALF_SECOND = samples.synthetic_eeg_uv(seconds=0.5)  # 64 samples at 128 Hz


def make_backend(**overrides) -> EEGBackend:
    backend = EEGBackend("127.0.0.1", 0, settings=EEGSettings(**overrides))
    backend.initialize_model()
    return backend


def send(backend: EEGBackend, owner: str, session_id="s1", x: np.ndarray = HALF_SECOND, sfreq=samples.SFREQ, **extra):
    eeg = samples.eeg_payload_b64(x, samples.CH_NAMES[: x.shape[0]], sfreq=sfreq)
    return backend.process_inference(RequestData({"session_id": session_id, "eeg": eeg, **extra}, owner=owner))


def test_same_session_id_of_another_client_is_another_session():
    backend = make_backend()
    send(backend, "a")
    assert send(backend, "a")["samples_received"] == 128
    # b cannot touch a's stream: its first chunk at another rate is b's own new stream (on a's it
    # would be refused as a stream change) ...
    quarter_256 = samples.synthetic_eeg_uv(seconds=0.25, sfreq=256.0)
    b = send(backend, "b", x=quarter_256, sfreq=256.0)
    assert b["sfreq"] == 256.0 and b["samples_received"] == 64 and b["session_id"] == "s1"
    # ... b cannot read it (b's count is its own) nor write into it.
    assert send(backend, "b", x=quarter_256, sfreq=256.0)["samples_received"] == 128
    # ... and a's stream goes on where it was.
    a = send(backend, "a")
    assert a["samples_received"] == 192 and a["sfreq"] == samples.SFREQ and a["session_id"] == "s1"


def test_reset_by_another_client_resets_only_its_own_session():
    backend = make_backend()
    for _ in range(3):
        send(backend, "a")
    send(backend, "b")
    reset = send(backend, "b", reset_session=True)
    assert reset["samples_received"] == 64 and "session reset on request" in reset["warnings"]
    assert send(backend, "a")["samples_received"] == 4 * 64


def test_many_sessions_of_another_client_evict_only_its_own():
    backend = make_backend(max_sessions=100, max_sessions_per_owner=3)
    send(backend, "a")
    send(backend, "a", session_id="s2")
    for i in range(10):
        send(backend, "b", session_id=f"flood-{i}")
    assert len(backend.sessions) == 2 + 3  # b kept only its quota
    assert send(backend, "a")["samples_received"] == 128
    assert send(backend, "a", session_id="s2")["samples_received"] == 128
    # b's own oldest went: flood-0 starts afresh, flood-9 goes on.
    assert send(backend, "b", session_id="flood-0")["samples_received"] == 64
    assert send(backend, "b", session_id="flood-9")["samples_received"] == 128


def test_full_store_refuses_new_sessions_and_keeps_serving_the_existing():
    backend = make_backend(max_sessions=2, max_sessions_per_owner=2)
    send(backend, "a")
    send(backend, "b")
    with pytest.raises(ProtocolError) as info:
        send(backend, "b", session_id="new")
    assert info.value.code == ErrorCode.OVERLOADED and "full" in info.value.message
    with pytest.raises(ProtocolError) as info:
        send(backend, "c", reset_session=True)
    assert info.value.code == ErrorCode.OVERLOADED
    assert send(backend, "a")["samples_received"] == 128
    assert send(backend, "b", reset_session=True)["samples_received"] == 64
    assert len(backend.sessions) == 2


@pytest.mark.parametrize(
    "session_id",
    [
        pytest.param(None, id="null"),
        pytest.param("absent", id="absent"),
        "",
        123,
        "\x00",
        pytest.param("\ud800", id="lone-surrogate"),
        "s1",
        "s" * 129,
    ],
)
def test_session_id_values_follow_the_shared_rule(session_id):
    backend = make_backend()
    data = {"eeg": samples.eeg_payload_b64(HALF_SECOND, samples.CH_NAMES)}
    if session_id != "absent":
        data["session_id"] = session_id
    try:
        expected = session_id_field(data.get("session_id"))
    except BadRequestError as exc:
        with pytest.raises(BadRequestError) as info:
            backend.process_inference(RequestData(data, owner="a"))
        # The shared rule's message, with the field named by its path as everywhere in this service.
        assert info.value.message == exc.message.replace("field 'session_id'", "'data.session_id'")
        assert len(backend.sessions) == 0
        return
    reply = backend.process_inference(RequestData(data, owner="a"))
    assert reply["session_id"] == expected
    # null and absent are the same (default) session of this client.
    assert send(backend, "a", session_id=expected)["samples_received"] == 128
