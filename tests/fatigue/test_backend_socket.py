"""The fatigue backend over a real WebSocket on 127.0.0.1 with the real MediaPipe engine."""

import asyncio
import base64

import cv2
import pytest
import websockets
from fatigue import samples

from support.net import free_port, http_get, rpc, serving, wait_ready
from vigil_fatigue.backend import FatigueBackend
from vigil_fatigue.settings import FatigueSettings

BAD = samples.bad_inputs()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=120))


def request(request_id, data):
    return {"type": "inference_request", "request_id": request_id, "data": data}


def _b64(image):
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return base64.b64encode(buf.tobytes()).decode()


@pytest.fixture(scope="module")
def closed_b64(astronaut_closed_bgr):
    return _b64(astronaut_closed_bgr)


@pytest.fixture(scope="module")
def open_b64(astronaut_bgr):
    return _b64(astronaut_bgr)


def _backend(**settings):
    return FatigueBackend("127.0.0.1", free_port(), settings=FatigueSettings(**settings))


def test_health_valid_frame_and_every_bad_input_on_one_connection():
    async def scenario():
        backend = _backend()
        async with serving(backend) as url:
            await wait_ready(backend, timeout=60)
            status, body = await asyncio.to_thread(http_get, f"http://127.0.0.1:{backend.bound_port}/readyz")
            assert status == 200
            async with websockets.connect(url, max_size=None) as ws:
                pong = await rpc(ws, {"type": "health_check"})
                assert pong["type"] == "pong" and pong["status"] == "healthy"
                assert "mediapipe" in pong["model"]["name"]
                reply = await rpc(ws, request("ok-0", samples.valid_data()))
                assert reply["type"] == "inference_response" and reply["request_id"] == "ok-0"
                data = reply["data"]
                assert data["face_detected"] is True and data["eyes_closed"] is False
                assert data["fatigue_level"] in ("alert", "drowsy", "very_drowsy")
                assert 0.0 <= data["prediction"] <= 1.0 and 0.0 <= data["confidence"] <= 1.0
                assert "_timing" in reply or "timing" in reply
                for i, (label, bad) in enumerate(BAD):
                    reply = await rpc(ws, request(f"bad-{i}", bad))
                    assert reply["type"] == "error", label
                    assert reply["code"] == "bad_request", label
                    assert reply["request_id"] == f"bad-{i}"
                    # the connection and the model still work after each bad input
                    good = {**samples.valid_data(), "timestamp": 2.0 + i}
                    reply = await rpc(ws, request(f"after-{i}", good))
                    assert reply["type"] == "inference_response", label

    run(scenario())


def test_session_over_the_wire_detects_a_microsleep_and_resets(open_b64, closed_b64):
    """10 frames/s: 3 s open, 1.5 s closed, then open; the closed run becomes a microsleep and the
    level very drowsy; a duplicate timestamp warns; reset_session starts over."""

    async def scenario():
        backend = _backend()
        async with serving(backend) as url:
            await wait_ready(backend, timeout=60)
            async with websockets.connect(url, max_size=None) as ws:
                for i in range(50):
                    t = round(i * 0.1, 3)
                    image = closed_b64 if 3.0 <= t < 4.5 else open_b64
                    reply = await rpc(ws, request(f"f{i}", {"image": image, "timestamp": t, "session_id": "drv"}))
                    data = reply["data"]
                    assert data["face_detected"] is True
                    assert data["eyes_closed"] is (3.0 <= t < 4.5)
                session = data["session"]
                assert session["microsleep_count"] == 1
                assert session["closed_s"] == pytest.approx(1.5)
                assert session["perclos"] == pytest.approx(1.5 / 4.9, abs=1e-5)  # replies are rounded to 1e-6
                assert data["fatigue_level"] == "very_drowsy"
                assert any("microsleeps" in r for r in data["reasons"])
                dup = await rpc(ws, request("dup", {"image": open_b64, "timestamp": 4.9, "session_id": "drv"}))
                assert "duplicate" in dup["data"]["warning"]
                assert dup["data"]["session"] == session
                other = await rpc(ws, request("o", {"image": open_b64, "timestamp": 0.0, "session_id": "other"}))
                assert other["data"]["session"]["microsleep_count"] == 0  # sessions do not mix
                reset = await rpc(ws, request("r", {"session_id": "drv", "reset_session": True}))
                assert reset["data"]["session_reset"] is True and reset["data"]["session_existed"] is True
                again = await rpc(ws, request("a", {"image": open_b64, "timestamp": 0.0, "session_id": "drv"}))
                assert again["data"]["session"]["frames"] == 1 and "warning" not in again["data"]

    run(scenario())
