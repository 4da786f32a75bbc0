"""The Ray Serve peer for bench/peers.py: a FastAPI WebSocket ingress deployment relaying every
frame to a no-op deployment (two hops, like client -> vigil gateway -> test backend).

Benchmark-only: runs with the python of a separate venv that has `ray[serve]==2.60.*`
(bench/peers.py --ray-python, default .venv-ray/bin/python); never in an image or a service's
requirements. Prints "READY <port>" once the application answers, then serves until SIGTERM.

  .venv-ray/bin/python bench/peer_ray.py --port 9200
"""

# No `from __future__ import annotations`: FastAPI must see the real WebSocket class on the
# ingress method (string annotations make it a query parameter, and the handshake fails with 1008).
import argparse
import json
import os
import signal
import threading

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no phoning home from a benchmark

import ray
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from ray import serve

app = FastAPI()


# num_cpus 0: placement never waits for a CPU slot on a 2-core box; both replicas still run.
@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
class NoOp:
    """The no-op model: decodes the request and echoes its data, as the vigil test backend does."""

    def __call__(self, text: str) -> str:
        msg = json.loads(text)
        reply = {"type": "inference_response", "request_id": msg.get("request_id"), "data": {"echo": msg.get("data")}}
        return json.dumps(reply)


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
@serve.ingress(app)
class Ingress:
    def __init__(self, noop) -> None:
        self.noop = noop

    @app.websocket("/")
    async def relay(self, websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                text = await websocket.receive_text()
                await websocket.send_text(await self.noop.remote(text))
        except WebSocketDisconnect:
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()

    # Loopback only; the smallest object store Ray accepts (75 MiB): the machine is shared, frames are 1 KB.
    ray.init(
        num_cpus=args.num_cpus,
        include_dashboard=False,
        object_store_memory=75 * 1024 * 1024,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,  # replica logs stay in /tmp/ray/session_latest/logs, not in the table's output
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # after ray.init, which installs its own handlers
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        serve.run(Ingress.bind(NoOp.bind()), name="peers", route_prefix="/")
        print(f"READY {args.port}", flush=True)
        stop.wait()
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
