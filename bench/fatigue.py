"""Fatigue backend benchmark: frames/s and p50/p95 latency for 640x480 JPEG frames of a real face.

  (a) in-process: the service's own pipeline (base64 decode + MediaPipe + geometry + session),
      no sockets;
  (b) the fatigue service directly over WebSocket (started here on a free port unless
      --service-url is given);
  (c) through the main backend (gateway) with "model": "fatigue" (only with --gateway-url).

Each mode runs 1 stream and N concurrent streams (--streams); a stream sends a frame, waits for
the reply, sends the next (a camera at full speed). Goal: (c) >= 0.8 x (a) and >= 30 frames/s for
one stream on CPU.

  .venv/bin/python bench/fatigue.py                                  # (a) and (b)
  .venv/bin/python bench/fatigue.py --gateway-url ws://127.0.0.1:8765  # + (c)
  .venv/bin/python bench/fatigue.py --start-gateway                  # + (c) on a main backend started
                                                          # here in front of the (b) service
  .venv/bin/python bench/fatigue.py --engine torch --max-batch-size 4  # the torch engine (weights
                                                          # converted to a temp dir unless given)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

# The service sets passive OpenMP waiting (shared_protocol.threads); (a) must run the model alike:
# with spinning OpenMP workers on a busy machine one in-process stream ran ~15x slower than (b).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
SERVICE_DIR = REPO / "services" / "fatigue"
sys.path[:0] = [str(SERVICE_DIR), str(REPO / "shared_protocol" / "src")]

from shared_protocol.images import decode_image_b64  # noqa: E402
from vigil_fatigue.analyzer import FatigueAnalyzer  # noqa: E402
from vigil_fatigue.backend import engine_from_settings  # noqa: E402
from vigil_fatigue.request import FatigueRequest  # noqa: E402
from vigil_fatigue.settings import FatigueSettings  # noqa: E402

FPS = 30.0  # client timestamps advance as from a 30 frames/s camera


def make_frames(count: int = 16) -> list[str]:
    """640x480 JPEGs (quality 85) of the astronaut photo, shifted a few pixels frame to frame."""
    from skimage import data

    face = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[:480]
    frames = []
    for i in range(count):
        canvas = np.full((480, 640, 3), 200, np.uint8)
        dx = 64 + int(12 * np.sin(i / count * 2 * np.pi))
        canvas[:, dx : dx + 512] = face
        ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 85])
        assert ok
        frames.append(base64.b64encode(buf.tobytes()).decode("ascii"))
    return frames


def summarize(label: str, streams: int, latencies: list[float], wall: float) -> dict:
    lat = sorted(latencies)
    p50 = statistics.median(lat) * 1000
    p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))] * 1000
    fps = len(lat) / wall
    print(f"{label:<28} streams={streams}  {fps:8.1f} frames/s  p50 {p50:7.2f} ms  p95 {p95:7.2f} ms  (n={len(lat)})")
    return {"mode": label, "streams": streams, "fps": fps, "p50_ms": p50, "p95_ms": p95}


# ---- (a) in-process ------------------------------------------------------------------------------


def bench_in_process(settings: FatigueSettings, frames: list[str], n_frames: int, streams: int, warmup: int) -> dict:
    analyzer = FatigueAnalyzer(engine_from_settings(settings), settings)
    latencies: list[float] = []
    lock = threading.Lock()

    def stream(k: int) -> None:
        mine = []
        for i in range(warmup + n_frames):
            started = time.perf_counter()
            image = decode_image_b64(frames[i % len(frames)])
            analyzer.analyze(FatigueRequest(f"bench-{k}", False, i / FPS, image))
            if i >= warmup:
                mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    if streams == 1:
        stream(0)  # on the thread that built the engine, as the service does (one worker thread)
    else:
        threads = [threading.Thread(target=stream, args=(k,)) for k in range(streams)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    wall = time.perf_counter() - started
    analyzer.engine.close()
    # Warm-up frames are inside `wall` but few; scale them out for the rate.
    wall *= n_frames / (warmup + n_frames)
    return summarize("(a) in-process", streams, latencies, wall)


# ---- (b)/(c) over WebSocket ----------------------------------------------------------------------


async def _ws_stream(url: str, frames: list[str], n_frames: int, warmup: int, k: int, model: str | None) -> list[float]:
    from websockets.asyncio.client import connect

    latencies = []
    session = f"bench-{k}-{time.time_ns()}"
    async with connect(url, max_size=None, compression=None) as ws:
        for i in range(warmup + n_frames):
            msg = {
                "type": "inference_request",
                "request_id": f"{k}-{i}",
                "data": {"image": frames[i % len(frames)], "timestamp": i / FPS, "session_id": session},
            }
            if model:
                msg["model"] = model
            started = time.perf_counter()
            await ws.send(json.dumps(msg))
            reply = json.loads(await ws.recv())
            elapsed = time.perf_counter() - started
            if reply.get("type") != "inference_response":
                raise RuntimeError(f"unexpected reply: {str(reply)[:300]}")
            if i >= warmup:
                latencies.append(elapsed)
    return latencies


def bench_ws(label: str, url: str, frames: list[str], n_frames: int, streams: int, warmup: int, model=None) -> dict:
    async def run() -> tuple[list[float], float]:
        started = time.perf_counter()
        results = await asyncio.gather(*(_ws_stream(url, frames, n_frames, warmup, k, model) for k in range(streams)))
        wall = (time.perf_counter() - started) * n_frames / (warmup + n_frames)
        return [x for r in results for x in r], wall

    latencies, wall = asyncio.run(run())
    return summarize(label, streams, latencies, wall)


def start_service(settings: FatigueSettings, max_batch_size: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "shared_protocol" / "src"),
        "VIGIL_LOG_LEVEL": "WARNING",
        "VIGIL_FATIGUE_ENGINE": settings.engine,
        "VIGIL_FATIGUE_TORCH_WEIGHTS_DIR": settings.torch_weights_dir,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "main.py",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--max-batch-size",
            str(max_batch_size),
        ],
        cwd=SERVICE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return proc, f"ws://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("fatigue service did not become ready")


def start_gateway(fatigue_url: str) -> tuple[subprocess.Popen, str]:
    """The main backend (services/main_backend) on a free port, relaying to the fatigue service
    at `fatigue_url` only (emotion and eeg disabled)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fatigue_port = fatigue_url.rsplit(":", 1)[1]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "shared_protocol" / "src"),
        "VIGIL_LOG_LEVEL": "WARNING",
        "VIGIL_FATIGUE_HOST": "127.0.0.1",
        "VIGIL_FATIGUE_PORT": fatigue_port,
        "VIGIL_EMOTION_ENABLED": "false",
        "VIGIL_EEG_ENABLED": "false",
    }
    main_dir = REPO / "services" / "main_backend"
    proc = subprocess.Popen(
        [
            sys.executable,
            "main.py",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--config",
            str(REPO / "config" / "models.yaml"),
        ],
        cwd=main_dir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return proc, f"ws://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("main backend did not become ready")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300, help="measured frames per stream")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured frames per stream first")
    parser.add_argument("--streams", type=int, default=4, help="concurrent streams for the second run")
    parser.add_argument("--service-url", help="fatigue service to use for (b) (default: start one here)")
    parser.add_argument("--gateway-url", help="main backend for (c), e.g. ws://127.0.0.1:8765")
    parser.add_argument("--start-gateway", action="store_true", help="start a main backend here for (c)")
    parser.add_argument("--skip-in-process", action="store_true")
    parser.add_argument("--engine", choices=["mediapipe", "torch"], default="mediapipe")
    parser.add_argument("--torch-weights-dir", help="converted weights (default: convert to a temp dir now)")
    parser.add_argument("--max-batch-size", type=int, default=1, help="the started service's batching")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.torch_weights_dir
        if args.engine == "torch" and weights is None:
            weights = tmp
            subprocess.run(
                [sys.executable, str(SERVICE_DIR / "convert_tflite.py"), "--out", tmp], check=True, cwd=SERVICE_DIR
            )
        settings = FatigueSettings(engine=args.engine, **({"torch_weights_dir": weights} if weights else {}))
        return run_benchmarks(args, settings)


def run_benchmarks(args: argparse.Namespace, settings: FatigueSettings) -> int:

    frames = make_frames()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"frames: 640x480 JPEG q85, {len(base64.b64decode(frames[0])) // 1024} KiB each; cpus={os.cpu_count()}; "
        f"load {load}; engine {settings.engine}; service max_batch_size {args.max_batch_size}"
    )
    results = []
    if not args.skip_in_process:
        for streams in (1, args.streams):
            results.append(bench_in_process(settings, frames, args.frames, streams, args.warmup))
    proc = None
    url = args.service_url
    if url is None:
        proc, url = start_service(settings, args.max_batch_size)
    gateway = None
    try:
        for streams in (1, args.streams):
            results.append(bench_ws("(b) fatigue service", url, frames, args.frames, streams, args.warmup))
        gateway_url = args.gateway_url
        if gateway_url is None and args.start_gateway:
            gateway, gateway_url = start_gateway(url)
        if gateway_url:
            for streams in (1, args.streams):
                results.append(
                    bench_ws("(c) via main backend", gateway_url, frames, args.frames, streams, args.warmup, "fatigue")
                )
    finally:
        for started in (gateway, proc):
            if started is not None:
                started.terminate()
                started.wait(timeout=30)
    single = {r["mode"][:3]: r["fps"] for r in results if r["streams"] == 1}
    if "(a)" in single and "(c)" in single:
        ratio = single["(c)"] / single["(a)"]
        print(
            f"(c)/(a) one stream: {ratio:.2f} (goal >= 0.8); (c) one stream {single['(c)']:.1f} frames/s (goal >= 30)"
        )
    if "(a)" in single and "(b)" in single:
        print(f"(b)/(a) one stream: {single['(b)'] / single['(a)']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
