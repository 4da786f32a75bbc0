"""The relay's CPU per request measured in one process, where a few microseconds show.

bench/peers.py runs the gateway, the backend and the load generator as three processes on the
machine's cores: the closest to production, but one cell swings 15 % with scheduling. Here the
gateway (MainBackend), an inline echo backend (tests/support/controlled_backend.py, run_inline)
and the clients share one event loop in this process, over real loopback sockets, so
`time.process_time()` per request is steady to 1-3 % and small changes can be compared:

- CPU per request of the whole chain (clients + gateway + backend), with batch frames on and off,
  interleaved for --rounds rounds;
- the gateway's Python per request, way in (client frame -> backend frame queued) and way out
  (backend reply -> client reply written, its socket write included), timed around
  `ProtocolServer._take_frame` and `BackendClient._on_frame`;
- the gateway's metrics recording per request (`count_client_message` + `observe_reply`, timeit).

  python bench/relay_inprocess.py [--concurrency 16] [--requests 2000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import timeit
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "shared_protocol" / "src"), str(REPO / "tests"), str(REPO / "services" / "main_backend")]

from websockets.asyncio.client import connect  # noqa: E402

from shared_protocol import Reply  # noqa: E402
from shared_protocol.client import BackendClient  # noqa: E402
from shared_protocol.eventloop import loop_factory  # noqa: E402
from shared_protocol.server import ProtocolServer  # noqa: E402
from support.controlled_backend import ControlledBackend  # noqa: E402
from support.net import serving, wait_ready  # noqa: E402
from vigil_main_backend.config import Config  # noqa: E402
from vigil_main_backend.gateway import MainBackend  # noqa: E402
from vigil_main_backend.metrics import MainBackendMetrics  # noqa: E402

FRAME = json.dumps(
    {
        "type": "inference_request",
        "request_id": "r1",
        "model": "bench",
        "data": {"op": "echo", "session_id": "bench", "blob": "x" * 1024},
    }
)


class GatewayClock:
    """Seconds spent in the gateway's two entry points (the backend's server is left out). The
    timing wrappers cost CPU themselves: `install` only after the CPU rounds."""

    def __init__(self) -> None:
        self.way_in = self.way_out = 0.0

    def install(self) -> None:
        take_frame, on_frame = ProtocolServer._take_frame, BackendClient._on_frame
        clock = self

        def timed_take_frame(server, peer, frame):
            if not isinstance(server.handler, MainBackend):
                return take_frame(server, peer, frame)
            started = time.perf_counter()
            try:
                return take_frame(server, peer, frame)
            finally:
                clock.way_in += time.perf_counter() - started

        def timed_on_frame(client, frame):
            started = time.perf_counter()
            try:
                return on_frame(client, frame)
            finally:
                clock.way_out += time.perf_counter() - started

        ProtocolServer._take_frame = timed_take_frame  # type: ignore[method-assign]
        BackendClient._on_frame = timed_on_frame  # type: ignore[method-assign]

    def reset(self) -> None:
        self.way_in = self.way_out = 0.0


async def clients(url: str, concurrency: int, requests: int) -> None:
    async def one() -> None:
        async with connect(url, compression=None) as ws:
            for _ in range(requests):
                await ws.send(FRAME)
                reply = json.loads(await ws.recv())
                if reply.get("type") != "inference_response":
                    raise RuntimeError(f"unexpected reply: {reply}")

    await asyncio.gather(*(one() for _ in range(concurrency)))


async def measure(
    batch_frames: bool, concurrency: int, requests: int, clock: GatewayClock
) -> tuple[float, float, float]:
    """(CPU us per request of the whole chain, gateway way in, way out) for one configuration."""
    backend = ControlledBackend()
    backend.run_inline = True
    async with serving(backend) as backend_url:
        await wait_ready(backend)
        port = int(backend_url.rsplit(":", 1)[1])
        config = Config.model_validate(
            {
                "main_backend": {"host": "127.0.0.1", "port": 0},
                "model_backends": {"bench": {"host": "127.0.0.1", "port": port, "batch_frames": batch_frames}},
            }
        )
        gateway = MainBackend(config)
        async with serving(gateway) as url:
            while not gateway.clients["bench"].ready:
                await asyncio.sleep(0.01)
            await clients(url, concurrency, 200)  # warm-up
            clock.reset()
            started = time.process_time()
            await clients(url, concurrency, requests)
            total = concurrency * requests
            cpu = time.process_time() - started
            return 1e6 * cpu / total, 1e6 * clock.way_in / total, 1e6 * clock.way_out / total


def metrics_cost(number: int = 200_000) -> float:
    metrics = MainBackendMetrics()
    reply = Reply(True, latency_s=0.0012, timing={"queue_ms": 0.01, "compute_ms": 0.02, "batch_size": 1})

    def one_request() -> None:
        metrics.count_client_message("inference_request")
        metrics.observe_reply("bench", reply)

    return 1e6 * timeit.timeit(one_request, number=number) / number


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=2000, help="per connection")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    clock = GatewayClock()
    print(f"{args.concurrency} connections x {args.requests} requests, 1 KB payload, one process")
    print("batch frames   CPU us per request (clients + gateway + backend)")
    for _ in range(args.rounds):
        for batch_frames in (True, False):
            with asyncio.Runner(loop_factory=loop_factory()) as runner:
                cpu, _, _ = runner.run(measure(batch_frames, args.concurrency, args.requests, clock))
            print(f"{'on' if batch_frames else 'off':>12} {cpu:8.1f}")
    clock.install()
    print("batch frames   gateway in us   gateway out us   (timed separately: the timers cost CPU too)")
    for batch_frames in (True, False):
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            _, way_in, way_out = runner.run(measure(batch_frames, args.concurrency, args.requests, clock))
        print(f"{'on' if batch_frames else 'off':>12} {way_in:15.2f} {way_out:16.2f}")
    print(f"gateway metrics per request (count_client_message + observe_reply): {metrics_cost():.2f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
