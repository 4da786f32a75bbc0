"""JSON vs the binary form (vigil.msgpack) through the main backend: bytes on the wire and round trip.

Two payloads, as issue 14 names them: a 640x480 JPEG camera frame (the astronaut, ~60 KB) and a
32 ch x 256 Hz x 1 s EEG chunk. Each goes through a real main backend to a real model backend that
decodes it (the shared image decoder; the EEG service's payload parser), as JSON text (base64
image, EEG as a list of lists) and as MessagePack (raw JPEG bytes, raw float32 samples).

    .venv/bin/python bench/binary_frames.py [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import msgspec
import numpy as np
from websockets.asyncio.client import connect

REPO = Path(__file__).resolve().parents[1]
for path in ("shared_protocol/src", "services/main_backend", "services/eeg", "tests"):
    sys.path.insert(0, str(REPO / path))

from shared_protocol import BaseModelBackend, messages  # noqa: E402
from shared_protocol.images import decode_image_b64  # noqa: E402
from support.net import serving  # noqa: E402
from vigil_eeg.payload import parse_request  # noqa: E402
from vigil_eeg.settings import EEGSettings  # noqa: E402
from vigil_main_backend.config import Config  # noqa: E402
from vigil_main_backend.gateway import MainBackend  # noqa: E402


class Decoder(BaseModelBackend):
    """Decodes what it gets, as a model service would first; answers with the shapes."""

    model_name = "decode-only"

    def initialize_model(self) -> None:
        self.eeg_settings = EEGSettings()

    def process_inference(self, data):
        if "image" in data:
            return {"shape": list(decode_image_b64(data["image"]).shape)}
        chunk = parse_request(data, self.eeg_settings)
        return {"shape": list(chunk.samples_uv.shape)}


def payloads() -> dict[str, tuple[dict, dict]]:
    from skimage import data as skdata

    frame = cv2.resize(cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR), (640, 480))
    jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
    samples = (np.random.default_rng(0).standard_normal((32, 256)) * 20).astype(np.float32)
    eeg = {"sfreq": 256, "ch_names": [f"E{i}" for i in range(32)], "unit": "uV"}
    return {
        f"JPEG 640x480 ({len(jpeg) / 1024:.0f} KB)": (
            {"image": base64.b64encode(jpeg).decode()},
            {"image": jpeg},
        ),
        "EEG 32 ch x 256 Hz x 1 s": (
            {"eeg": {**eeg, "data": samples.round(3).tolist()}},
            {"eeg": {**eeg, "shape": [32, 256], "data_b64": samples.tobytes()}},
        ),
    }


async def measure(url: str, data: dict, binary: bool, requests: int) -> tuple[int, int, float]:
    """(request bytes, reply bytes, p50 ms) over `requests` sequential round trips."""
    protocols = [messages.BINARY_SUBPROTOCOL] if binary else None
    async with connect(url, subprotocols=protocols, max_size=None) as ws:
        timings = []
        sizes = (0, 0)
        for i in range(requests):
            message = {"type": "inference_request", "request_id": f"r{i}", "model": "decoder", "data": data}
            frame = msgspec.msgpack.encode(message) if binary else json.dumps(message, separators=(",", ":"))
            started = time.perf_counter()
            await ws.send(frame)
            reply = await ws.recv()
            timings.append((time.perf_counter() - started) * 1000)
            decoded = msgspec.msgpack.decode(reply) if binary else json.loads(reply)
            assert decoded["type"] == "inference_response", decoded
            sizes = (len(frame.encode() if isinstance(frame, str) else frame), len(reply))
        return sizes[0], sizes[1], statistics.median(timings)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    backend = Decoder("127.0.0.1", 0)
    async with serving(backend) as backend_url:
        port = int(backend_url.rsplit(":", 1)[1])
        config = Config.model_validate(
            {
                "main_backend": {"host": "127.0.0.1", "port": 0},
                "model_backends": {"decoder": {"host": "127.0.0.1", "port": port, "inputs": ["image", "eeg"]}},
            }
        )
        gateway = MainBackend(config, api_tokens=())
        async with serving(gateway) as url:
            while not gateway.clients["decoder"].ready:
                await asyncio.sleep(0.01)
            print(f"{'payload':30} {'form':7} {'request B':>10} {'reply B':>8} {'p50 ms':>8}")
            for name, (as_json, as_binary) in payloads().items():
                rows = {}
                for form, data, binary in (("json", as_json, False), ("binary", as_binary, True)):
                    rows[form] = await measure(url, data, binary, args.requests)
                    sent, received, p50 = rows[form]
                    print(f"{name:30} {form:7} {sent:>10} {received:>8} {p50:>8.3f}")
                ratio_bytes = rows["binary"][0] / rows["json"][0]
                ratio_p50 = rows["binary"][2] / rows["json"][2]
                print(f"{'':30} binary/json: request bytes x{ratio_bytes:.2f}, p50 x{ratio_p50:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
