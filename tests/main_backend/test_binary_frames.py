"""The binary form (WebSocket subprotocol vigil.msgpack): the same messages as MessagePack, images
as raw bytes and EEG as raw float32, relayed by the gateway without re-encoding; JSON stays the
default on every connection."""

from __future__ import annotations

import asyncio
import base64
import json

import msgspec
import numpy as np
from websockets.asyncio.client import connect

from shared_protocol import BaseModelBackend, messages
from shared_protocol.images import decode_image_b64, encode_image_b64
from support.net import serving
from vigil_eeg.backend import EEGBackend
from vigil_eeg.settings import EEGSettings
from vigil_main_backend.config import Config
from vigil_main_backend.gateway import MainBackend

MSGPACK = msgspec.msgpack


def gateway_config(backends: dict[str, int]) -> Config:
    return Config.model_validate(
        {
            "main_backend": {"host": "127.0.0.1", "port": 0, "health_interval": 0.5},
            "model_backends": {
                name: {"host": "127.0.0.1", "port": port, "reconnect_interval": 0.2} for name, port in backends.items()
            },
        }
    )


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def ready(gateway: MainBackend, name: str) -> None:
    for _ in range(1000):
        if gateway.clients[name].ready:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"backend {name} never became ready")


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=120))


class ImageShape(BaseModelBackend):
    """Decodes the image (the real shared decoder) and says how it arrived."""

    model_name = "image-shape"

    def initialize_model(self) -> None:
        pass

    def process_inference(self, data):
        image = decode_image_b64(data.get("image"))
        return {"shape": list(image.shape), "arrived_as": type(data["image"]).__name__, "mean": float(image.mean())}


def jpeg_bytes() -> bytes:
    rng = np.random.default_rng(0)
    image = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    return base64.b64decode(encode_image_b64(image))


async def binary_rpc(ws, message: dict) -> dict:
    await ws.send(MSGPACK.encode(message))
    frame = await asyncio.wait_for(ws.recv(), 30)
    assert isinstance(frame, bytes), frame  # a binary request gets a binary reply
    return MSGPACK.decode(frame)


def test_binary_relay_and_analyze_match_json():
    async def scenario():
        image_backend = ImageShape("127.0.0.1", 0)
        eeg_backend = EEGBackend("127.0.0.1", 0, settings=EEGSettings())
        async with serving(image_backend) as image_url, serving(eeg_backend) as eeg_url:
            config = gateway_config({"fatigue": port_of(image_url), "eeg": port_of(eeg_url)})
            gateway = MainBackend(config, api_tokens=())
            async with serving(gateway) as url:
                await ready(gateway, "fatigue")
                await ready(gateway, "eeg")
                raw_jpeg = jpeg_bytes()
                samples = (np.random.default_rng(1).standard_normal((4, 256)) * 20).astype(np.float32)
                eeg = {"sfreq": 128, "ch_names": ["Fz", "Cz", "Pz", "Oz"], "unit": "uV", "shape": [4, 256]}
                async with connect(url, subprotocols=[messages.BINARY_SUBPROTOCOL]) as binary, connect(url) as text:
                    assert binary.subprotocol == messages.BINARY_SUBPROTOCOL and text.subprotocol is None
                    request = {"type": "inference_request", "request_id": "b1", "model": "fatigue"}
                    reply = await binary_rpc(binary, {**request, "data": {"image": raw_jpeg}})
                    assert reply["type"] == "inference_response" and reply["request_id"] == "b1", reply
                    # bytes reached the backend: the gateway relayed MessagePack, not a JSON re-encoding
                    assert reply["data"]["arrived_as"] == "bytes" and reply["data"]["shape"] == [48, 64, 3]
                    as_text = base64.b64encode(raw_jpeg).decode()
                    await text.send(json.dumps({**request, "request_id": "j1", "data": {"image": as_text}}))
                    json_reply = json.loads(await text.recv())
                    assert json_reply["data"]["mean"] == reply["data"]["mean"]  # same pixels either way
                    assert json_reply["data"]["arrived_as"] == "str"

                    analyze = {
                        "type": "analyze",
                        "request_id": "a1",
                        "data": {
                            "session_id": "s",
                            "timestamp": 0.0,
                            "image": raw_jpeg,
                            "eeg": {**eeg, "data_b64": samples.tobytes()},
                        },
                    }
                    reply = await binary_rpc(binary, analyze)
                    assert reply["type"] == "analyze_response", reply
                    assert reply["data"]["results"]["fatigue"]["arrived_as"] == "bytes"
                    assert reply["data"]["results"]["eeg"]["samples_received"] == 256, reply["data"]
                    assert reply["data"]["errors"] == {}

                    # JSON text frames still work on a binary connection, answered in JSON.
                    await binary.send(json.dumps({"type": "health_check", "request_id": "h"}))
                    pong = json.loads(await binary.recv())
                    assert pong["type"] == "pong" and pong["request_id"] == "h"

    run(scenario())


def test_binary_frames_need_the_subprotocol_and_bad_msgpack_is_a_bad_request():
    async def scenario():
        backend = ImageShape("127.0.0.1", 0)
        async with serving(backend) as backend_url:
            gateway = MainBackend(gateway_config({"fatigue": port_of(backend_url)}), api_tokens=())
            async with serving(gateway) as url:
                await ready(gateway, "fatigue")
                async with connect(url) as text:
                    await text.send(MSGPACK.encode({"type": "health_check"}))
                    reply = json.loads(await text.recv())
                    assert reply["code"] == "bad_request" and "vigil.msgpack" in reply["error"]
                async with connect(url, subprotocols=[messages.BINARY_SUBPROTOCOL]) as binary:
                    for frame in (b"\xc1", b"\x93\x01\x02\x03", MSGPACK.encode({"type": "analyze", "request_id": "x"})):
                        await binary.send(frame)
                        reply = MSGPACK.decode(await asyncio.wait_for(binary.recv(), 10))
                        assert reply["type"] == "error" and reply["code"] == "bad_request", reply
                    reply = await binary_rpc(
                        binary,
                        {
                            "type": "inference_request",
                            "request_id": "bad",
                            "model": "fatigue",
                            "data": {"image": b"GIF89a"},
                        },
                    )
                    assert reply["code"] == "bad_request" and "not JPEG or PNG" in reply["error"], reply
                    # The backend connection shared by all clients survived all of it.
                    reply = await binary_rpc(
                        binary,
                        {
                            "type": "inference_request",
                            "request_id": "ok",
                            "model": "fatigue",
                            "data": {"image": jpeg_bytes()},
                        },
                    )
                    assert reply["type"] == "inference_response"

    run(scenario())
