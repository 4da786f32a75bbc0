"""A second (hostile) client cannot read, reset, evict or write the first client's session.

In process: the backend gets each request's `data` as a RequestData whose owner names the client
connection (the server sets it; here owners "a" and "b"), exactly as the base class hands it over.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import pytest

from shared_protocol.errors import BadRequestError, ErrorCode, ProtocolError
from shared_protocol.fields import RequestData, session_id_field
from vigil_emotion.backend import EmotionBackend
from vigil_emotion.settings import EmotionSettings

from .samples import astronaut_canvas_bgr, jpeg_b64


def _face_crop() -> np.ndarray:
    return astronaut_canvas_bgr()[0:240, 160:420]  # the one face (~90 px) on a small frame: quick to scan


@functools.cache
def face_b64() -> str:
    return jpeg_b64(_face_crop())


@functools.cache
def other_face_b64() -> str:
    # The same face smaller: a face with different probabilities, so a write would show.
    return jpeg_b64(cv2.resize(_face_crop(), None, fx=0.8, fy=0.8))


@functools.cache
def blank_b64() -> str:
    return jpeg_b64(np.full((240, 260, 3), 90, np.uint8))  # no face: the average is carried over


@pytest.fixture
def make_backend(mini_xception_dir):
    def make(**overrides) -> EmotionBackend:
        settings = EmotionSettings(model_dir=str(mini_xception_dir), device="cpu", **overrides)
        backend = EmotionBackend("127.0.0.1", 0, settings=settings)
        backend.initialize_model()
        return backend

    return make


def infer(backend: EmotionBackend, owner: str, **data) -> dict:
    return backend.process_inference(RequestData(data, owner=owner))


def face(backend, owner, session_id="cam", **extra):
    return infer(backend, owner, image=face_b64(), session_id=session_id, **extra)


def test_same_session_id_of_another_client_is_another_session(make_backend):
    backend = make_backend()
    face(backend, "a")
    a = face(backend, "a")
    assert a["smoothed"]["frames"] == 2 and a["session_id"] == "cam"
    # b cannot read a's average: its "cam" starts empty ...
    b = infer(backend, "b", image=blank_b64(), session_id="cam")
    assert b["smoothed"] is None and b["session_id"] == "cam"
    # ... and cannot write into it: three other faces go to b's own "cam".
    for _ in range(3):
        b = infer(backend, "b", image=other_face_b64(), session_id="cam")
    assert b["smoothed"]["frames"] == 3
    assert b["smoothed"]["probabilities"] != a["smoothed"]["probabilities"]
    carried = infer(backend, "a", image=blank_b64(), session_id="cam")
    assert carried["smoothed"]["frames"] == 2
    assert carried["smoothed"]["probabilities"] == a["smoothed"]["probabilities"]


def test_reset_by_another_client_resets_only_its_own_session(make_backend):
    backend = make_backend()
    for _ in range(3):
        face(backend, "a")
    reset = face(backend, "b", reset_session=True)
    assert reset["smoothed"]["frames"] == 1 and reset["smoothed"]["restarted"]
    assert face(backend, "a")["smoothed"]["frames"] == 4


def test_many_sessions_of_another_client_evict_only_its_own(make_backend):
    backend = make_backend(max_sessions=100, max_sessions_per_owner=3)
    face(backend, "a")
    face(backend, "a", session_id="cam-2")
    for i in range(10):
        face(backend, "b", session_id=f"flood-{i}")
    assert len(backend.smoother) == 2 + 3  # b kept only its quota
    assert face(backend, "a")["smoothed"]["frames"] == 2
    assert face(backend, "a", session_id="cam-2")["smoothed"]["frames"] == 2
    # b's own oldest went: flood-0 starts afresh, flood-9 goes on.
    assert face(backend, "b", session_id="flood-0")["smoothed"]["frames"] == 1
    assert face(backend, "b", session_id="flood-9")["smoothed"]["frames"] == 2


def test_full_store_refuses_new_sessions_and_keeps_serving_the_existing(make_backend):
    backend = make_backend(max_sessions=2, max_sessions_per_owner=2)
    face(backend, "a")
    face(backend, "b")
    with pytest.raises(ProtocolError) as info:
        face(backend, "b", session_id="new")
    assert info.value.code == ErrorCode.OVERLOADED and "full" in info.value.message
    with pytest.raises(ProtocolError) as info:
        face(backend, "c", reset_session=True)
    assert info.value.code == ErrorCode.OVERLOADED
    assert face(backend, "a")["smoothed"]["frames"] == 2
    assert face(backend, "b", reset_session=True)["smoothed"]["frames"] == 1
    # In a batch only the request that needs a new session fails.
    batch = [
        RequestData({"image": face_b64(), "session_id": "cam"}, owner="a"),
        RequestData({"image": face_b64(), "session_id": "cam"}, owner="c"),
        RequestData({"image": face_b64(), "session_id": "cam"}, owner="b"),
    ]
    first, refused, third = backend.process_batch(batch)
    assert first["smoothed"]["frames"] == 3 and third["smoothed"]["frames"] == 2
    assert isinstance(refused, ProtocolError) and refused.code == ErrorCode.OVERLOADED


@pytest.mark.parametrize(
    "session_id",
    [
        pytest.param(None, id="null"),
        pytest.param("absent", id="absent"),
        "",
        123,
        "\x00",
        pytest.param("\ud800", id="lone-surrogate"),
        "cam",
        "s" * 129,
    ],
)
def test_session_id_values_follow_the_shared_rule(make_backend, session_id):
    backend = make_backend()
    data = {"image": face_b64()}
    if session_id != "absent":
        data["session_id"] = session_id
    try:
        expected = session_id_field(data.get("session_id"))
    except BadRequestError as exc:
        with pytest.raises(BadRequestError) as info:
            backend.process_inference(RequestData(data, owner="a"))
        assert info.value.message == exc.message and "'session_id'" in info.value.message
        assert len(backend.smoother) == 0
        return
    reply = backend.process_inference(RequestData(data, owner="a"))
    assert reply["session_id"] == expected
    # null and absent are the same (default) session of this client.
    assert face(backend, "a", session_id=expected)["smoothed"]["frames"] == 2
