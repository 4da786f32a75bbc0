"""`analyze` through a running stack vs each model alone: requests/s for 1 and 4 clients (issue 18).

  python bench/analyze.py [--url ws://127.0.0.1:8765] [--seconds 20] [--clients 1,4]

Start the stack first (`scripts/up.sh`, or `docker-compose up -d`; it waits up to `--wait` s for
every backend to be ready). Each
client is one WebSocket connection sending requests back to back (the next one when the reply is
in), for `--seconds` per table cell:
- `analyze`: a real face (scikit-image's astronaut photo as a 640x480 JPEG) + 0.5 s of real
  14-channel EEG (the Emotiv recording shipped in spkit, streamed chunk after chunk), i.e.
  fatigue + emotion + eeg at once;
- the same inputs to one model alone (`inference_request` with "model": fatigue / emotion / eeg).
Prints one table of replies/s, then, for 1 client, analyze/s ÷ (1 / slowest model's per-request
time): 1.0 means `analyze` costs no more than its slowest model alone. The clients run on the same
host as the stack, so the host's load (printed) matters. Any error reply makes the exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import pickle
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests")]

from eeg.samples import eeg_payload_b64  # noqa: E402
from fatigue.samples import face_jpeg_b64  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import WebSocketException  # noqa: E402

MODELS = ("fatigue", "emotion", "eeg")
COLUMNS = ("analyze", *MODELS)
SPKIT_EEG_FILE = "spkit/data/files/EEG16SecData.pkl"
EEG_SFREQ = 128.0
EEG_CHUNK = 64  # samples: 0.5 s at 128 Hz
WARMUP_REQUESTS = 3  # per client, before each cell: connections, caches, lazy model paths
WS_MAX_SIZE = 32 * 1024 * 1024
REPLY_TIMEOUT_S = 60.0  # the gateway answers every request (a timeout error at worst) well before this


def emotiv_chunks() -> list[str]:
    """The real 16 s Emotiv recording (14 ch, 128 Hz, µV) as 0.5 s `eeg` payloads, pre-encoded JSON."""
    try:
        path = Path(importlib.metadata.distribution("spkit").locate_file(SPKIT_EEG_FILE))
    except importlib.metadata.PackageNotFoundError:
        sys.exit("bench/analyze.py needs spkit==0.0.9.7 (services/eeg/requirements-test-nodeps.txt) for its EEG")
    with path.open("rb") as fh:
        samples, ch_names = pickle.load(fh)  # (2048 samples, 14 channels)
    x = np.asarray(samples, dtype=np.float64).T
    return [
        json.dumps(eeg_payload_b64(x[:, start : start + EEG_CHUNK], list(ch_names), sfreq=EEG_SFREQ))
        for start in range(0, x.shape[1] - EEG_CHUNK + 1, EEG_CHUNK)
    ]


class Payloads:
    """Request texts built from pre-encoded parts: the clients share the host with the stack, so
    they must cost little CPU per request."""

    def __init__(self) -> None:
        self.image_json = json.dumps(face_jpeg_b64())
        self.eeg_chunks = emotiv_chunks()

    def request(self, kind: str, session: str, seq: int) -> str:
        # One timestamp per request, 0.5 s apart: the EEG chunks then join into full 4 s windows
        # (a gap would make the eeg backend clear its buffer and skip the analysis).
        parts = [f'"session_id": "{session}"', f'"timestamp": {seq * EEG_CHUNK / EEG_SFREQ:.4f}']
        if kind in ("analyze", "fatigue", "emotion"):
            parts.append(f'"image": {self.image_json}')
        if kind in ("analyze", "eeg"):
            parts.append(f'"eeg": {self.eeg_chunks[seq % len(self.eeg_chunks)]}')
        data = "{" + ", ".join(parts) + "}"
        request_id = f"{session}-{seq}"
        if kind == "analyze":
            return f'{{"type": "analyze", "request_id": "{request_id}", "data": {data}}}'
        return f'{{"type": "inference_request", "request_id": "{request_id}", "model": "{kind}", "data": {data}}}'


def reply_error(kind: str, reply: dict) -> str | None:
    """None when the reply is a full success for `kind`, else why not."""
    if kind == "analyze":
        if reply.get("type") != "analyze_response":
            return f"{reply.get('code')}: {reply.get('error')}"
        results, errors = reply["data"].get("results", {}), reply["data"].get("errors", {})
        if errors or set(results) != set(MODELS):
            return f"analyze reached {sorted(results)}; errors {errors}"
        return None
    if reply.get("type") != "inference_response":
        return f"{reply.get('code')}: {reply.get('error')}"
    return None


@dataclass
class Cell:
    kind: str
    clients: int
    done: int = 0
    errors: int = 0
    elapsed: float = 0.0
    first_error: str | None = None
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def mean_ms(self) -> float:
        return 1000 * sum(self.latencies) / len(self.latencies) if self.latencies else float("nan")

    def text(self) -> str:
        value = f"{self.rate:.1f}"
        return value + (f" ({self.errors} err)" if self.errors else "")


async def open_connection(url: str, token: str | None, retry_s: float = 15.0):
    """A client connection; a refused connect is retried for a while (a restarting proxy on a busy host)."""
    deadline = time.monotonic() + retry_s
    while True:
        try:
            return await connect(
                url, max_size=WS_MAX_SIZE, compression=None, open_timeout=10, additional_headers=auth_headers(token)
            )
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def run_cell(
    url: str, token: str | None, payloads: Payloads, kind: str, clients: int, seconds: float, run_id: str
) -> Cell:
    cell = Cell(kind, clients)
    connections = [await open_connection(url, token) for _ in range(clients)]

    async def client(index: int, ws, deadline: float | None, count: int | None, seq0: int) -> int:
        session = f"bench-{run_id}-{kind}-{clients}-{index}"
        seq = seq0
        while (deadline is None or time.perf_counter() < deadline) and (count is None or seq - seq0 < count):
            started = time.perf_counter()
            try:
                await ws.send(payloads.request(kind, session, seq))
                reply = json.loads(await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT_S))
            except (TimeoutError, WebSocketException) as exc:  # this client stops; the cell shows the error
                cell.errors += 1
                cell.first_error = cell.first_error or f"{type(exc).__name__}: {exc}"
                return seq
            seq += 1
            if deadline is None:
                continue  # warm-up: not counted
            error = reply_error(kind, reply)
            if error is None:
                cell.done += 1
                cell.latencies.append(time.perf_counter() - started)
            else:
                cell.errors += 1
                cell.first_error = cell.first_error or error
        return seq

    try:
        seqs = await asyncio.gather(*(client(i, ws, None, WARMUP_REQUESTS, 0) for i, ws in enumerate(connections)))
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(client(i, ws, deadline, None, seqs[i]) for i, ws in enumerate(connections)))
        cell.elapsed = time.perf_counter() - started
    finally:
        await asyncio.gather(*(ws.close() for ws in connections))
    return cell


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def wait_ready(url: str, wait_s: float, token: str | None) -> dict:
    """The gateway's pong once every model backend reports `healthy` (or the last one seen after wait_s)."""
    deadline = time.monotonic() + wait_s
    pong: dict = {}
    while True:
        try:
            async with connect(
                url, max_size=WS_MAX_SIZE, open_timeout=10, additional_headers=auth_headers(token)
            ) as ws:
                await ws.send(json.dumps({"type": "health_check", "request_id": "bench-health"}))
                pong = json.loads(await asyncio.wait_for(ws.recv(), 10))
        except (OSError, TimeoutError, WebSocketException) as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"no gateway at {url}: {exc}") from exc
        else:
            if not not_healthy(pong) or time.monotonic() > deadline:
                return pong
        await asyncio.sleep(1.0)


def not_healthy(pong: dict) -> list[str]:
    backends = pong.get("backends", {})
    return [name for name in MODELS if backends.get(name, {}).get("status") != "healthy"]


def backend_details(url: str, token: str | None) -> dict:
    """The gateway's /status (per backend: the model info its pong reported, thread budget included);
    {} where it is not readable (auth on and no --token)."""
    parts = urlsplit(url)
    status_url = urlunsplit(("https" if parts.scheme == "wss" else "http", parts.netloc, "/status", "", ""))
    try:
        with urllib.request.urlopen(urllib.request.Request(status_url, headers=auth_headers(token)), timeout=10) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return {}


async def stack_report(url: str, wait_s: float, token: str | None) -> list[str]:
    """One line per backend: its status and, where the gateway shows it, device and thread budget."""
    pong = await wait_ready(url, wait_s, token)
    details = backend_details(url, token)
    lines = [f"gateway status: {pong.get('status')}"]
    for name, backend in sorted(pong.get("backends", {}).items()):
        model = details.get(name, {}).get("model") or {}
        threads = model.get("threads") or {}
        budget = threads.get("budget")
        where = f", threads {budget} (allowance {threads.get('allowance')}, {threads.get('source')})" if budget else ""
        device = f" device={model['device']}" if "device" in model else ""
        lines.append(f"  {name}: {backend.get('status')}{device}{where}")
    missing = not_healthy(pong)
    if missing:
        raise SystemExit(f"backends not healthy through {url}: {missing}\n" + "\n".join(lines))
    return lines


def print_table(cells: dict[tuple[str, int], Cell], client_counts: list[int]) -> None:
    header = "| clients | analyze/s | fatigue only | emotion only | eeg only |"
    print(header)
    print("|---|---|---|---|---|")
    for clients in client_counts:
        row = [cells[(kind, clients)].text() for kind in COLUMNS]
        print(f"| {clients} | " + " | ".join(row) + " |")


def print_ratio(cells: dict[tuple[str, int], Cell], client_counts: list[int]) -> None:
    if 1 not in client_counts:
        print("analyze/s ÷ (1 / slowest model's per-request time): needs a 1-client row")
        return
    singles = {name: cells[(name, 1)] for name in MODELS}
    if any(cell.rate == 0 for cell in singles.values()):
        print("analyze/s ÷ (1 / slowest model's per-request time): a model answered nothing")
        return
    slowest = min(singles, key=lambda name: singles[name].rate)
    per_request_s = 1 / singles[slowest].rate
    ratio = cells[("analyze", 1)].rate * per_request_s
    print(
        f"1 client: analyze/s ÷ (1 / slowest model's per-request time) = {ratio:.2f} "
        f"(slowest alone: {slowest}, {1000 * per_request_s:.1f} ms/request; "
        f"analyze {cells[('analyze', 1)].mean_ms:.1f} ms/request)"
    )


async def main_async(args: argparse.Namespace) -> int:
    client_counts = [int(c) for c in args.clients.split(",") if c.strip()]
    if not client_counts or min(client_counts) < 1:
        raise SystemExit("--clients takes a comma-separated list of counts >= 1, e.g. 1,4")
    payloads = Payloads()
    for line in await stack_report(args.url, args.wait, args.token):
        print(line)
    load_before = os.getloadavg()
    run_id = f"{int(time.time())}"
    cells: dict[tuple[str, int], Cell] = {}
    for clients in client_counts:
        for kind in COLUMNS:
            cells[(kind, clients)] = await run_cell(args.url, args.token, payloads, kind, clients, args.seconds, run_id)
    load_after = os.getloadavg()
    print(
        f"\n{args.seconds:g} s per cell, replies/s through {args.url}; host: {os.cpu_count()} CPUs, "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after (clients run on this host)\n"
    )
    print_table(cells, client_counts)
    print()
    print_ratio(cells, client_counts)
    failed = [cell for cell in cells.values() if cell.errors]
    for cell in failed:
        print(f"errors: {cell.kind} x{cell.clients}: {cell.errors}, first: {cell.first_error}", file=sys.stderr)
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="ws://127.0.0.1:8765", help="the main backend (gateway)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring time per table cell")
    parser.add_argument("--clients", default="1,4", help="comma-separated client counts, one table row each")
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for every backend to be ready")
    parser.add_argument(
        "--token", default=os.environ.get("VIGIL_API_TOKEN"), help="API token when the gateway has auth on"
    )
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
