"""Scale-out benchmark: throughput through the main backend with 1, 2, 3 model-backend replicas,
and what a replica loss costs (sessions moved, requests lost).

  python bench/scale.py [--backend eeg|echo] [--replicas 1 2 3] [--sessions 60] [--seconds 10]

Every replica is its own process (services/eeg/main.py, one worker each; or the echo test
backend), the main backend another (services/main_backend/main.py, one config entry listing the
replicas as `endpoints`). Each session streams 0.5 s EEG chunks (14 ch x 128 Hz) closed-loop:
the next chunk leaves when the previous reply arrived, so the offered load follows capacity.

Prints, per replica count: successful replies/s, p50/p95 latency, errors, and requests left unanswered
(must be 0). Then the loss run: the sessions stream over 3 replicas, one replica is SIGKILLed
halfway, and it prints how many sessions moved (each flagged `session_reset` once; expected
about 1/3) and how many requests got an error (those in flight on the killed replica).
On a 2-core machine the replica curve flattens once the cores are busy: the point is the shape
and that nothing is lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "shared_protocol" / "src"), str(REPO / "tests")]

from eeg.samples import CH_NAMES, eeg_payload_b64, synthetic_eeg_uv  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from support.net import BackendProcess, free_port, wait_http  # noqa: E402

CHUNK_S = 0.5
SFREQ = 128.0
# One gateway connection per replica carries every session: room for all of them.
LIMITS = ("--max-queue", "1000", "--max-in-flight-per-connection", "1000")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] if ordered else float("nan")


class Replica:
    """One model backend process on its own port."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._echo: BackendProcess | None = None

    def start(self) -> Replica:
        if self.kind == "echo":
            self._echo = BackendProcess(self.port, *LIMITS).start()
            self.proc = self._echo.proc
            return self
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO / "shared_protocol" / "src"), str(REPO / "services" / "eeg")]),
            "OMP_NUM_THREADS": "1",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "main.py", "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "WARNING"]
            + list(LIMITS),
            cwd=REPO / "services" / "eeg",
            env=env,
        )
        wait_http(f"http://127.0.0.1:{self.port}/readyz", timeout=120)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self._echo is not None:
            self._echo.stop()
        else:
            self.kill()


class GatewayProcess:
    def __init__(self, replicas: list[Replica], tmp: Path) -> None:
        self.port = free_port()
        endpoints = ", ".join(f'"127.0.0.1:{r.port}"' for r in replicas)
        config = tmp / f"models-{self.port}.yaml"
        config.write_text(
            f"main_backend:\n  host: 127.0.0.1\n  port: {self.port}\n  health_interval: 1\n"
            f"model_backends:\n  eeg:\n    host: 127.0.0.1\n    port: {replicas[0].port}\n"
            f"    endpoints: [{endpoints}]\n    required: true\n    request_timeout: 30\n"
            f"    reconnect_interval: 0.5\n    max_reconnect_attempts: 1000000\n    max_in_flight: 4096\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "main.py", "--config", str(config), "--log-level", "WARNING"],
            cwd=REPO / "services" / "main_backend",
            env={**os.environ, "PYTHONPATH": str(REPO / "shared_protocol" / "src")},
        )
        wait_http(f"http://127.0.0.1:{self.port}/readyz", timeout=60)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


class Stream:
    """One client session streaming chunks closed-loop over its own connection."""

    def __init__(self, session: str, chunk: dict) -> None:
        self.session = session
        self.chunk = chunk
        self.sent = 0
        self.answered = Counter()  # request id -> replies (exactly once expected)
        self.latencies: list[float] = []
        self.errors: Counter = Counter()
        self.resets: list[str] = []

    async def run(self, url: str, stop_at: float) -> None:
        async with connect(url, max_size=None, compression=None) as ws:
            while time.monotonic() < stop_at:
                rid = f"{self.session}-{self.sent}"
                data = {**self.chunk, "session_id": self.session, "timestamp": self.sent * CHUNK_S}
                self.sent += 1
                started = time.perf_counter()
                await ws.send(
                    json.dumps({"type": "inference_request", "request_id": rid, "model": "eeg", "data": data})
                )
                reply = json.loads(await asyncio.wait_for(ws.recv(), 60))
                self.answered[reply.get("request_id")] += 1
                self.latencies.append((time.perf_counter() - started) * 1000)
                if reply["type"] != "inference_response":
                    self.errors[reply.get("code")] += 1
                elif reply["data"].get("session_reset"):
                    self.resets.append(reply["data"].get("session_reset_reason", ""))


async def drive(url: str, sessions: int, seconds: float, label: str, kill=None) -> list[Stream]:
    chunk = {"eeg": eeg_payload_b64(synthetic_eeg_uv(seconds=CHUNK_S), CH_NAMES, SFREQ)}
    streams = [Stream(f"{label}-s{i}", chunk) for i in range(sessions)]
    stop_at = time.monotonic() + seconds
    tasks = [asyncio.create_task(stream.run(url, stop_at)) for stream in streams]
    if kill is not None:
        await asyncio.sleep(seconds / 2)
        await asyncio.to_thread(kill)
    await asyncio.gather(*tasks)
    return streams


def summarize(streams: list[Stream], seconds: float) -> dict:
    sent = sum(s.sent for s in streams)
    replies = sum(sum(s.answered.values()) for s in streams)
    duplicates = sum(1 for s in streams for n in s.answered.values() if n > 1)
    latencies = [v for s in streams for v in s.latencies]
    errors = sum((s.errors for s in streams), Counter())
    return {
        "ok_rps": (replies - sum(errors.values())) / seconds,
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "errors": dict(errors),
        "unanswered": sent - replies,
        "duplicates": duplicates,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["eeg", "echo"], default="eeg")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--sessions", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-loss", action="store_true", help="skip the replica-loss run")
    args = parser.parse_args()

    print(f"backend={args.backend} sessions={args.sessions} seconds={args.seconds:g} cores={os.cpu_count()}")
    print(f"{'replicas':>8} {'ok/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'unanswered':>10}  errors")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.replicas:
            # Fresh replicas per run: session stores start empty (they are bounded, with a TTL).
            with running(args.backend, n) as replicas:
                gateway = GatewayProcess(replicas, Path(tmp))
                try:
                    streams = asyncio.run(drive(f"ws://127.0.0.1:{gateway.port}", args.sessions, args.seconds, f"n{n}"))
                finally:
                    gateway.stop()
            r = summarize(streams, args.seconds)
            print(f"{n:>8} {r['ok_rps']:>8.1f} {r['p50']:>8.1f} {r['p95']:>8.1f} {r['unanswered']:>10}  {r['errors']}")
        if args.no_loss:
            return
        with running(args.backend, 3) as replicas:
            gateway = GatewayProcess(replicas, Path(tmp))
            try:
                streams = asyncio.run(
                    drive(f"ws://127.0.0.1:{gateway.port}", args.sessions, args.seconds, "loss", kill=replicas[1].kill)
                )
            finally:
                gateway.stop()
        r = summarize(streams, args.seconds)
        moved = [s for s in streams if s.resets]
        reasons = Counter(reason.split(":")[0] for s in streams for reason in s.resets)
        print(
            f"replica loss (3 -> 2, SIGKILL at {args.seconds / 2:g} s): sessions moved {len(moved)}/{len(streams)} "
            f"(expected about {len(streams) / 3:.0f}), resets per moved session "
            f"{max((len(s.resets) for s in moved), default=0)}, reasons {dict(reasons)}; "
            f"errors {r['errors']}, unanswered {r['unanswered']}, duplicates {r['duplicates']}, ok/s {r['ok_rps']:.1f}"
        )


@contextlib.contextmanager
def running(kind: str, n: int) -> Iterator[list[Replica]]:
    replicas = [Replica(kind) for _ in range(n)]
    try:
        for replica in replicas:
            replica.start()
        yield replicas
    finally:
        for replica in replicas:
            replica.stop()


if __name__ == "__main__":
    main()
