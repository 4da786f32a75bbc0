"""MainBackend benchmark: round-trip latency and throughput, direct vs through the main backend.

The echo test backend and the main backend each run in their own process, so the measuring
client's event loop does not share a thread with them.

  python bench/gateway.py [--requests 2000] [--sizes 1024 204800] [--concurrency 1 16]

Prints p50/p95/p99 latency (ms) and requests/s for (a) client -> backend and (b) client -> main
backend -> backend, and the per-hop latency the main backend adds (b - a at p50).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "shared_protocol" / "src"), str(REPO / "tests")]

from websockets.asyncio.client import connect  # noqa: E402

from support.net import BackendProcess, free_port, wait_http  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def measure(url: str, payload_bytes: int, concurrency: int, total: int, via_gateway: bool) -> dict:
    data = {"blob": "x" * payload_bytes}
    latencies: list[float] = []
    per_worker = total // concurrency

    async def worker(index: int) -> None:
        async with connect(url, max_size=None, compression=None) as ws:
            for i in range(per_worker):
                msg = {"type": "inference_request", "request_id": f"{index}-{i}", "data": data}
                if via_gateway:
                    msg["model"] = "bench"
                text = json.dumps(msg)
                started = time.perf_counter()
                await ws.send(text)
                reply = json.loads(await ws.recv())
                latencies.append(time.perf_counter() - started)
                if reply["type"] != "inference_response":
                    raise RuntimeError(f"unexpected reply: {reply}")

    # warm-up (connections, caches)
    async with connect(url, max_size=None, compression=None) as ws:
        for i in range(50):
            msg = {"type": "inference_request", "request_id": f"w{i}", "data": data, "model": "bench"}
            await ws.send(json.dumps(msg))
            await ws.recv()
    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    ms = [v * 1000 for v in latencies]
    return {
        "p50": percentile(ms, 50),
        "p95": percentile(ms, 95),
        "p99": percentile(ms, 99),
        "mean": statistics.fmean(ms),
        "rps": len(ms) / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 200 * 1024])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args()

    backend_port, gateway_port = free_port(), free_port()
    with (
        tempfile.TemporaryDirectory() as tmp,
        BackendProcess(backend_port, "--max-concurrency", "4", "--max-queue", "256"),
    ):
        cfg = Path(tmp) / "models.yaml"
        cfg.write_text(
            f"main_backend:\n  host: 127.0.0.1\n  port: {gateway_port}\n"
            f"model_backends:\n  bench:\n    host: 127.0.0.1\n    port: {backend_port}\n    required: true\n"
        )
        gateway = subprocess.Popen(
            [sys.executable, "main.py", "--config", str(cfg), "--log-level", "WARNING"],
            cwd=REPO / "services" / "main_backend",
            env={**os.environ, "PYTHONPATH": str(REPO / "shared_protocol" / "src")},
        )
        try:
            wait_http(f"http://127.0.0.1:{gateway_port}/readyz")
            print(f"{'payload':>9} {'conc':>4} {'path':<8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'req/s':>9}")
            for size in args.sizes:
                for conc in args.concurrency:
                    direct = asyncio.run(measure(f"ws://127.0.0.1:{backend_port}", size, conc, args.requests, False))
                    via = asyncio.run(measure(f"ws://127.0.0.1:{gateway_port}", size, conc, args.requests, True))
                    for name, r in (("direct", direct), ("gateway", via)):
                        print(
                            f"{size:>9} {conc:>4} {name:<8} {r['p50']:>8.3f} {r['p95']:>8.3f} {r['p99']:>8.3f} {r['rps']:>9.0f}"
                        )
                    print(f"{size:>9} {conc:>4} {'added':<8} {via['p50'] - direct['p50']:>8.3f}  (p50 per hop, ms)")
        finally:
            gateway.terminate()
            gateway.wait(timeout=20)


if __name__ == "__main__":
    main()
