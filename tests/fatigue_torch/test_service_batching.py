"""The fatigue service on the torch engine: frames from many streams share one engine call and
get the same replies as one by one; batch sizes are visible in pong."""

from __future__ import annotations

import asyncio
import json

import cv2
import numpy as np
import pytest

from shared_protocol.images import encode_image_b64
from support.net import connect_ws, rpc, serving, wait_ready
from vigil_fatigue.backend import FatigueBackend
from vigil_fatigue.settings import FatigueSettings


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=120))


def _frames(astronaut):
    frames = []
    for i, scale in enumerate((1.0, 0.9, 0.8, 1.1)):
        image = cv2.resize(astronaut, None, fx=scale, fy=scale)
        frames.append({"image": encode_image_b64(image), "timestamp": 1.0, "session_id": f"stream{i}"})
    frames.append(
        {"image": encode_image_b64(np.zeros((240, 320, 3), np.uint8)), "timestamp": 1.0, "session_id": "dark"}
    )
    frames.append({"image": 42, "timestamp": 1.0, "session_id": "bad"})
    return frames


def _request(i, data):
    return json.dumps({"type": "inference_request", "request_id": f"f{i}", "data": data})


def _serve(weights_dir, frames, pipelined: bool):
    settings = FatigueSettings(engine="torch", torch_weights_dir=str(weights_dir), device="cpu")
    kwargs = {"max_batch_size": 8, "max_queue_delay_ms": 200} if pipelined else {}
    backend = FatigueBackend("127.0.0.1", 0, settings=settings, **kwargs)

    async def scenario():
        async with serving(backend) as url:
            await wait_ready(backend, timeout=60)
            async with await connect_ws(url) as ws:
                if pipelined:
                    for i, data in enumerate(frames):
                        await ws.send(_request(i, data))
                    got = [json.loads(await asyncio.wait_for(ws.recv(), 60)) for _ in frames]
                else:
                    got = [await rpc(ws, _request(i, data), timeout=60) for i, data in enumerate(frames)]
                return {r["request_id"]: r for r in got}, await rpc(ws, {"type": "health_check"})

    return run(scenario())


def test_torch_engine_service_batches_across_streams(weights_dir, astronaut):
    frames = _frames(astronaut)
    single, _ = _serve(weights_dir, frames, pipelined=False)
    batched, pong = _serve(weights_dir, frames, pipelined=True)

    assert pong["model"]["device"] == "cpu" and pong["model"]["name"].startswith("fatigue-torch")
    for replies in (single, batched):
        assert replies["f5"]["code"] == "bad_request" and "image" in replies["f5"]["error"]
        assert replies["f4"]["data"]["face_detected"] is False
        for i in range(4):
            data = replies[f"f{i}"]["data"]
            assert data["face_detected"] and data["eyes_closed"] is False, data
            assert 0.25 < data["ear"] < 0.4
    for i in range(5):
        a, b = single[f"f{i}"]["data"], batched[f"f{i}"]["data"]
        assert (a["ear"] is None and b["ear"] is None) or b["ear"] == pytest.approx(a["ear"], abs=1e-5)
        assert a["face_box"] == b["face_box"] or b["face_box"] == pytest.approx(a["face_box"], abs=1e-2)
    assert max(r["timing"]["batch_size"] for r in batched.values() if r["type"] == "inference_response") >= 2
    assert any(int(size) >= 2 for size in pong["batching"]["batch_sizes"])
