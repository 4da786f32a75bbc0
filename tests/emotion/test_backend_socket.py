"""EmotionBackend over real sockets (BaseModelBackend on 127.0.0.1) with the real converted model."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from support.net import connect_ws, http_get, rpc, serving, wait_ready
from vigil_emotion.backend import EmotionBackend
from vigil_emotion.settings import EmotionSettings

from .samples import bad_inputs, face_jpeg_b64, jpeg_b64, valid_data


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=120))


@pytest.fixture()
def backend(mini_xception_dir):
    settings = EmotionSettings(model_dir=str(mini_xception_dir), device="cpu", smoothing_window=3)
    return EmotionBackend("127.0.0.1", 0, settings=settings, max_concurrency=2)


def _request(rid: str, data: dict) -> dict:
    return {"type": "inference_request", "request_id": rid, "data": data}


def test_health_and_a_happy_face(backend):
    async def scenario():
        async with serving(backend) as url:
            await wait_ready(backend)
            status, _ = await asyncio.to_thread(http_get, url.replace("ws://", "http://") + "/readyz")
            assert status == 200
            async with await connect_ws(url) as ws:
                pong = await rpc(ws, {"type": "health_check", "request_id": "h"})
                assert pong["status"] == "healthy", pong
                model = pong["model"]
                assert model["model_type"] == "mini_xception" and model["device"] == "cpu"
                assert model["labels"] == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]

                reply = await rpc(ws, _request("r1", valid_data()))
                assert reply["type"] == "inference_response" and reply["request_id"] == "r1", reply
                data = reply["data"]
                assert data["prediction"] == "happy" and data["confidence"] > 0.9
                assert data["face_detected"] and data["primary_face"] == 0 and len(data["faces"]) == 1
                face = data["faces"][0]
                assert face["label"] == "happy" and set(face["box"]) == {"x", "y", "width", "height", "score"}
                assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
                assert data["probabilities"] == face["probabilities"]
                assert data["valence"] > 0.5 and data["arousal"] > 0.3  # happy: (0.81, 0.51)
                assert data["smoothed"]["label"] == "happy" and data["smoothed"]["frames"] == 1
                assert data["image_size"] == {"width": 640, "height": 480}
                assert data["session_id"] == "samples" and data["timestamp"] == 1.0

    run(scenario())


def test_session_smoothing_no_face_and_reset(backend):
    blank = jpeg_b64(np.full((480, 640, 3), 90, np.uint8))

    async def scenario():
        async with serving(backend) as url:
            await wait_ready(backend)
            async with await connect_ws(url) as ws:
                for i in range(3):
                    data = (
                        await rpc(
                            ws, _request(f"f{i}", {"image": face_jpeg_b64(), "session_id": "cam", "timestamp": i})
                        )
                    )["data"]
                assert data["smoothed"]["frames"] == 3
                raw = data["faces"][0]["probabilities"]["happy"]
                # Constant input: the average equals the frame (up to rounding).
                assert data["smoothed"]["probabilities"]["happy"] == pytest.approx(raw, abs=1e-5)

                # No face: a normal reply, faces [], the average carried over and marked as such.
                empty = (await rpc(ws, _request("n", {"image": blank, "session_id": "cam", "timestamp": 3})))["data"]
                assert empty["faces"] == [] and empty["prediction"] is None and empty["confidence"] is None
                assert empty["face_detected"] is False and empty["faces_detected"] == 0
                assert empty["smoothed"]["label"] == "happy" and empty["smoothed"]["updated"] is False

                # Another session has its own (empty) state.
                other = (await rpc(ws, _request("o", {"image": blank, "session_id": "other"})))["data"]
                assert other["smoothed"] is None

                reset = await rpc(
                    ws,
                    _request(
                        "z", {"image": face_jpeg_b64(), "session_id": "cam", "timestamp": 4, "reset_session": True}
                    ),
                )
                assert reset["data"]["smoothed"]["frames"] == 1 and reset["data"]["smoothed"]["restarted"]

    run(scenario())


def test_bad_inputs_are_bad_requests_and_the_service_stays_up(backend):
    async def scenario():
        async with serving(backend) as url:
            await wait_ready(backend)
            async with await connect_ws(url) as ws:
                for label, data in bad_inputs():
                    reply = await rpc(ws, _request("bad", data))
                    assert reply["type"] == "error" and reply["code"] == "bad_request", (label, reply)
                reply = await rpc(ws, _request("after", valid_data()))
                assert reply["type"] == "inference_response" and reply["data"]["prediction"] == "happy"

    run(scenario())


def test_concurrent_requests_are_all_answered(backend):
    async def scenario():
        async with serving(backend) as url:
            await wait_ready(backend)
            async with await connect_ws(url) as ws:
                for i in range(6):
                    await ws.send(json.dumps(_request(f"c{i}", {**valid_data(), "session_id": f"s{i % 2}"})))
                replies = [json.loads(await asyncio.wait_for(ws.recv(), 60)) for _ in range(6)]
        assert sorted(r["request_id"] for r in replies) == [f"c{i}" for i in range(6)]
        assert all(r["data"]["prediction"] == "happy" for r in replies)

    run(scenario())
