"""EEG backend benchmark: ms per analysed 4 s window, in-process and through the service.

  python bench/eeg.py [--repeats 200] [--no-service]

Configurations: 14 ch x 128 Hz (Emotiv EPOC) and 32 ch x 256 Hz. For each it prints
- in-process `analyze_window` (filters + bad channels + Welch PSD + indices) p50/p95 ms,
- in-process `process_inference` with a 0.5 s chunk (decode + ring buffer + analysis + scoring + reply),
- through the service: round trip of one 0.5 s chunk over WebSocket to `services/eeg/main.py`
  running in its own process (includes JSON, base64 and the socket).
Goal (issue): <= 10 ms in-process for 32 ch x 256 Hz.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "shared_protocol" / "src"), str(REPO / "services" / "eeg"), str(REPO / "tests")]

from eeg.samples import eeg_payload_b64  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from support.net import free_port, wait_http  # noqa: E402
from vigil_eeg.analysis import analyze_window  # noqa: E402
from vigil_eeg.backend import EEGBackend  # noqa: E402
from vigil_eeg.settings import EEGSettings  # noqa: E402

CONFIGS = [(14, 128.0), (32, 256.0)]
CHUNK_S = 0.5


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def eeg_like(n_channels: int, sfreq: float, seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(sfreq * seconds)) / sfreq
    alpha = 15 * np.sin(2 * np.pi * 10 * t)
    return (
        alpha[None, :]
        + np.cumsum(rng.normal(0, 1.0, (n_channels, t.size)), axis=1) * 0.2
        + rng.normal(0, 5, (n_channels, t.size))
    )


def names(n: int) -> list[str]:
    return [f"E{i}" for i in range(n)]


def bench_analyze(n_channels: int, sfreq: float, repeats: int) -> list[float]:
    settings = EEGSettings()
    window = eeg_like(n_channels, sfreq, settings.window_s)
    ch = tuple(names(n_channels))
    analyze_window(window, ch, sfreq, settings)  # filter design + montage happen once, not per window
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        analyze_window(window, ch, sfreq, settings)
        times.append((time.perf_counter() - start) * 1000)
    return times


def chunk_requests(n_channels: int, sfreq: float, repeats: int) -> list[dict]:
    step = int(sfreq * CHUNK_S)
    warm = int(EEGSettings().window_s / CHUNK_S)
    x = eeg_like(n_channels, sfreq, (warm + repeats) * CHUNK_S, seed=1)
    return [
        {
            "session_id": "bench",
            "timestamp": k * CHUNK_S,
            "eeg": eeg_payload_b64(x[:, k * step : (k + 1) * step], names(n_channels), sfreq),
        }
        for k in range(warm + repeats)
    ]


def bench_process(n_channels: int, sfreq: float, repeats: int) -> list[float]:
    backend = EEGBackend("127.0.0.1", 0, settings=EEGSettings())
    backend.initialize_model()
    requests = chunk_requests(n_channels, sfreq, repeats)
    warm = len(requests) - repeats
    times = []
    for k, data in enumerate(requests):
        start = time.perf_counter()
        reply = backend.process_inference(data)
        if k >= warm:
            assert reply["window_full"]
            times.append((time.perf_counter() - start) * 1000)
    return times


async def bench_service(url: str, n_channels: int, sfreq: float, repeats: int) -> tuple[list[float], list[float]]:
    requests = chunk_requests(n_channels, sfreq, repeats)
    warm = len(requests) - repeats
    round_trips, compute = [], []
    async with connect(url, max_size=None) as ws:
        for k, data in enumerate(requests):
            data["session_id"] = f"bench-{n_channels}-{sfreq:g}"
            frame = json.dumps({"type": "inference_request", "request_id": f"b{k}", "data": data})
            start = time.perf_counter()
            await ws.send(frame)
            reply = json.loads(await ws.recv())
            elapsed = (time.perf_counter() - start) * 1000
            assert reply["type"] == "inference_response", reply
            if k >= warm:
                round_trips.append(elapsed)
                timing = reply.get("timing") or reply.get("_timing") or {}
                if "compute_ms" in timing:
                    compute.append(timing["compute_ms"])
    return round_trips, compute


def fmt(times: list[float]) -> str:
    return f"p50 {statistics.median(times):6.2f} ms  p95 {percentile(times, 95):6.2f} ms  mean {statistics.fmean(times):6.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--no-service", action="store_true", help="skip the through-the-service measurement")
    args = parser.parse_args()

    print(f"EEG backend benchmark, 4 s windows, {args.repeats} repeats, chunks of {CHUNK_S} s")
    for n_channels, sfreq in CONFIGS:
        label = f"{n_channels:2d} ch x {sfreq:g} Hz"
        print(f"{label}  analyze_window (in-process)     {fmt(bench_analyze(n_channels, sfreq, args.repeats))}")
        print(f"{label}  process_inference (in-process)  {fmt(bench_process(n_channels, sfreq, args.repeats))}")

    if args.no_service:
        return 0
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "shared_protocol" / "src"), str(REPO / "services" / "eeg")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "main.py", "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING"],
        cwd=REPO / "services" / "eeg",
        env=env,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60)
        for n_channels, sfreq in CONFIGS:
            label = f"{n_channels:2d} ch x {sfreq:g} Hz"
            round_trips, compute = asyncio.run(bench_service(f"ws://127.0.0.1:{port}", n_channels, sfreq, args.repeats))
            print(f"{label}  through the service (round trip) {fmt(round_trips)}")
            if compute:
                print(f"{label}  through the service (compute_ms) {fmt(compute)}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
