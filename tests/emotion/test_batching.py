"""Cross-request batching: concurrent frames share one forward pass and get the same answers."""

from __future__ import annotations

import asyncio
import json

import cv2
import pytest

from support.net import connect_ws, rpc, serving, wait_ready
from vigil_emotion.backend import EmotionBackend
from vigil_emotion.settings import EmotionSettings

from .samples import astronaut_canvas_bgr, jpeg_b64, valid_data


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=120))


def _frames():
    """Different frames (scales of the real face) in different sessions, plus one bad request."""
    frames = [dict(valid_data(), session_id=f"s{i}", timestamp=float(i)) for i in range(3)]
    frames.append(
        dict(
            valid_data(),
            image=jpeg_b64(cv2.resize(astronaut_canvas_bgr(), None, fx=0.8, fy=0.8)),
            session_id="s3",
            timestamp=3.0,
        )
    )
    frames.append({"image": "not base64!", "session_id": "s4", "timestamp": 4.0})
    return frames


def _request(i, data):
    return json.dumps({"type": "inference_request", "request_id": f"b{i}", "data": data})


def _strip(reply):
    return {k: v for k, v in reply.items() if k != "timing"}


def test_batched_requests_equal_single_requests(mini_xception_dir):
    def backend(**kwargs):
        settings = EmotionSettings(model_dir=str(mini_xception_dir), device="cpu")
        return EmotionBackend("127.0.0.1", 0, settings=settings, **kwargs)

    async def replies(server, pipelined: bool):
        async with serving(server) as url:
            await wait_ready(server, timeout=60)
            async with await connect_ws(url) as ws:
                frames = _frames()
                if pipelined:
                    for i, data in enumerate(frames):
                        await ws.send(_request(i, data))
                    got = [json.loads(await asyncio.wait_for(ws.recv(), 60)) for _ in frames]
                else:
                    got = [await rpc(ws, _request(i, data), timeout=60) for i, data in enumerate(frames)]
                pong = await rpc(ws, {"type": "health_check"})
                return {r["request_id"]: r for r in got}, pong

    singles, _ = run(replies(backend(), pipelined=False))
    batched, pong = run(replies(backend(max_batch_size=8, max_queue_delay_ms=200), pipelined=True))

    assert singles["b4"]["code"] == "bad_request" and batched["b4"]["code"] == "bad_request"
    for rid in ("b0", "b1", "b2", "b3"):
        a, b = singles[rid]["data"], batched[rid]["data"]
        assert a["prediction"] == b["prediction"] == "happy"
        for label, p in a["probabilities"].items():
            assert b["probabilities"][label] == pytest.approx(p, abs=1e-5)
    assert max(r["timing"]["batch_size"] for r in batched.values() if r["type"] == "inference_response") >= 2
    sizes = pong["batching"]["batch_sizes"]
    assert sum(int(k) * v for k, v in sizes.items()) == 5 and any(int(k) >= 2 for k in sizes)
