"""vigil's relay beside its peers, in one run with one load generator (issue 14).

Peers, each started in its own process(es), measured one after the other (an idle peer would
still take CPU from the next on a small machine):
  floor  a bare `websockets` echo server: one hop, no protocol work (bench/peer_floor.py)
  relay  the two-hop floor: a bare `websockets` relay (one shared upstream connection, frames routed
         back by a 4-byte header, nothing parsed) in front of the floor's echo server, the same
         process layout as vigil (bench/peer_relay.py); relay-c: the same with vigil's coalesced
         upstream writes; relay-x: every transport technique vigil uses (direct delivery, one
         upstream frame per event-loop turn, coalesced replies) and no protocol work, about the
         least two hops of Python websockets cost. What two hops cost before any protocol work.
  vigil  client -> main backend (services/main_backend/main.py) -> no-op test backend
         (tests/support/controlled_backend.py, op "echo"): two hops, gateway and backend each a process
  vigil-nb  vigil with batch frames off (`batch_frames: false`): what batch frames change, same run
  vigil-w  vigil with --gateway-workers N gateway processes (`workers: N`, default 2; named vigil-wN
         in the table): the multi-process gateway, for machines with cores to spare
  vigil-strip  vigil with its per-request guarantees and layers removed (bench/stripped_chain.py:
         no admission or byte budgets, deadlines, sessions, replicas, metrics): an experiment, an
         upper bound on what dropping them would buy, never a mode of the product
  before the same two processes from a git worktree of --before REF (an earlier commit)
  ray    Ray Serve 2.60: FastAPI WebSocket ingress deployment -> no-op deployment (bench/peer_ray.py),
         when --ray-python (default .venv-ray/bin/python) exists and imports ray; benchmark-only

Load: asyncio `websockets` clients in this process (or split over --load-procs processes, so that
on a machine with many cores the load generator is not what caps a peer), a 1 KB payload, one
request in flight per connection, every connection warmed up first, then each cell runs --seconds
(or --requests per connection). Prints p50/p99 (ms) and req/s per cell and the ratios issue 14 sets
goals for.

  python bench/peers.py [--seconds 4] [--concurrency 1 16] [--peers floor relay vigil ray]
  python bench/peers.py --peers floor vigil before --before 344fb61   # before/after in one run
  python bench/peers.py --peers floor relay-x vigil --rounds 5   # medians of 5 rounds, order rotated
  python bench/peers.py --peers floor vigil vigil-w --gateway-workers 4 --load-procs 4   # many cores
  python bench/peers.py --profile /tmp/prof   # also py-spy the vigil processes at the top concurrency

--profile DIR records the gateway and the backend with py-spy (dev venv: pip install py-spy) during
an extra vigil cell at the highest concurrency and prints bench/peer_profile.py's summary of each.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import msgspec
from websockets.asyncio.client import connect

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
sys.path.insert(0, str(BENCH))

from peer_profile import summarize  # noqa: E402

SHARED_SRC = REPO / "shared_protocol" / "src"
CONTROLLED_BACKEND = REPO / "tests" / "support" / "controlled_backend.py"
INLINE_BACKEND = os.environ.get("VIGIL_BENCH_INLINE", "1") != "0"  # VIGIL_BENCH_INLINE=0: thread hand-off
MAIN_BACKEND = REPO / "services" / "main_backend"
STRIPPED_CHAIN = REPO / "bench" / "stripped_chain.py"

# The goals issue 14 sets (ratios of the same run).
GOAL_THROUGHPUT_VS_FLOOR = 0.4  # vigil req/s at the top concurrency / floor's
GOAL_P50_VS_FLOOR = 3.0  # vigil p50 at concurrency 1 / floor's (at most)
GOAL_VS_RAY = 25.0  # vigil req/s / Ray Serve's

_decode = msgspec.json.decode

# The two-hop floor peers and bench/peer_relay.py's mode for each.
RELAY_MODES = {"relay": "plain", "relay-c": "coalesce", "relay-x": "batch"}


@dataclass
class Cell:
    peer: str
    conc: int
    p50: float  # ms
    p99: float  # ms
    rps: float
    count: int
    errors: int
    cpu_ms: dict[str, float]  # CPU ms per request of each process (tree), the load generator included


# ---- CPU accounting: what a request costs each process, whatever else runs on the machine --------

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: str) -> tuple[int, float] | None:
    """(parent pid, user+system CPU seconds) of one process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2 :].split()
    return int(rest[1]), (int(rest[11]) + int(rest[12])) / _TICK


def cpu_seconds(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each named process and its live descendants (Ray's actors),
    and by this process ("client")."""
    stats = {int(d): st for d in os.listdir("/proc") if d.isdigit() and (st := _stat(d)) is not None}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    out = {}
    for name, root in roots.items():
        total, todo = 0.0, [root]
        while todo:
            pid = todo.pop()
            total += stats.get(pid, (0, 0.0))[1]
            todo += children.get(pid, [])
        out[name] = total
    usage = os.times()
    out["client"] = usage.user + usage.system
    return out


# ---- load generator ---------------------------------------------------------------------------


def request_frame(payload_bytes: int, model: str | None) -> tuple[bytes, bytes]:
    """The request text around its request id: the same 1 KB frame for every peer."""
    head = b'{"type":"inference_request",' + (b'"model":"%s",' % model.encode() if model else b"")
    body = b'"data":{"op":"echo","session_id":"bench","blob":"' + b"x" * payload_bytes + b'"}}'
    return head + b'"request_id":"', b'",' + body


async def run_cell(
    url: str,
    model: str | None,
    expect: str,
    conc: int,
    seconds: float,
    requests: int | None,
    payload: int,
    warmup: int,
    procs: dict[str, int],
    start_barrier=None,
) -> tuple[list[float], float, int, dict[str, float]]:
    """Latencies (s) of every measured request, wall time of the measured part, replies not `expect`,
    CPU seconds each process used in the measured part. With `start_barrier` (a multiprocessing
    Barrier) the measured part starts when every load process has warmed up its connections."""
    prefix, suffix = request_frame(payload, model)
    latencies: list[list[float]] = [[] for _ in range(conc)]
    errors = 0
    ready = 0
    all_ready = asyncio.Event()
    start_at: list[float] = []
    cpu_at: list[dict[str, float]] = []

    async def worker(index: int) -> None:
        nonlocal errors, ready
        async with connect(url, max_size=None, compression=None, open_timeout=30) as ws:

            async def one(rid: bytes) -> bool:
                await ws.send((prefix + rid + suffix).decode(), text=True)
                reply = _decode(await ws.recv(decode=False))
                return reply.get("type") == expect and reply.get("request_id") == rid.decode()

            for i in range(warmup):
                await one(b"w%d-%d" % (index, i))
            ready += 1
            if ready == conc:
                if start_barrier is not None:
                    # Blocks this loop, whose connections are all idle now: nothing is in flight.
                    start_barrier.wait()
                cpu_at.append(cpu_seconds(procs))
                start_at.append(time.perf_counter())
                all_ready.set()
            await all_ready.wait()
            mine = latencies[index]
            deadline = start_at[0] + seconds
            i = 0
            while (requests is None and time.perf_counter() < deadline) or (requests is not None and i < requests):
                started = time.perf_counter()
                ok = await one(b"%d-%d" % (index, i))
                mine.append(time.perf_counter() - started)
                if not ok:
                    errors += 1
                i += 1

    await asyncio.gather(*(worker(i) for i in range(conc)))
    elapsed = time.perf_counter() - start_at[0]
    cpu_end = cpu_seconds(procs)
    cpu = {name: cpu_end[name] - cpu_at[0][name] for name in cpu_end}
    return [v for per in latencies for v in per], elapsed, errors, cpu


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def measure(
    peer: str, url: str, model: str | None, expect: str, conc: int, procs: dict[str, int], args: argparse.Namespace
) -> Cell:
    cell_args = (url, model, expect, conc, args.seconds, args.requests, args.payload, args.warmup)
    load_procs = min(args.load_procs, conc)
    if load_procs == 1:
        lat, elapsed, errors, cpu = run_on_loop(run_cell(*cell_args, procs))
    else:
        lat, elapsed, errors, cpu = run_in_load_procs(cell_args, procs, load_procs)
    ms = sorted(v * 1000 for v in lat)
    per_request = {name: 1000 * seconds / len(ms) for name, seconds in cpu.items()}
    return Cell(peer, conc, percentile(ms, 50), percentile(ms, 99), len(ms) / elapsed, len(ms), errors, per_request)


def _load_proc(cell_args: tuple, share: int, barrier, results) -> None:
    """One load process: `share` of the cell's connections; its own CPU only (as "client")."""
    url, model, expect, _, seconds, requests, payload, warmup = cell_args
    try:
        results.put(run_on_loop(run_cell(url, model, expect, share, seconds, requests, payload, warmup, {}, barrier)))
    except BaseException as exc:
        barrier.abort()  # the others (and the parent) stop waiting for this one
        results.put(f"load process {os.getpid()}: {exc!r}")  # a string: any exception would not pickle


def run_in_load_procs(
    cell_args: tuple, procs: dict[str, int], load_procs: int
) -> tuple[list[float], float, int, dict[str, float]]:
    """run_cell with its connections split over `load_procs` forked processes, started together:
    the peer's CPU is read here around the measured part, the load processes' CPU ("client")
    is what each used in it, summed."""
    conc = cell_args[3]
    shares = [conc // load_procs + (1 if i < conc % load_procs else 0) for i in range(load_procs)]
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(load_procs + 1)
    results = ctx.Queue()
    children = [ctx.Process(target=_load_proc, args=(cell_args, n, barrier, results)) for n in shares]
    for child in children:
        child.start()
    try:
        try:
            barrier.wait(timeout=120)
        except threading.BrokenBarrierError:
            raise RuntimeError(f"a load process failed before the cell started: {results.get(timeout=10)}") from None
        cpu_start = cpu_seconds(procs)
        outcomes = [results.get(timeout=cell_args[4] * 4 + 600) for _ in children]
        cpu_end = cpu_seconds(procs)
    finally:
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
    failed = [o for o in outcomes if isinstance(o, str)]
    if failed:
        raise RuntimeError(f"a load process failed: {failed[0]}")
    cpu = {name: cpu_end[name] - cpu_start[name] for name in procs}
    cpu["client"] = sum(o[3]["client"] for o in outcomes)
    latencies = [v for o in outcomes for v in o[0]]
    return latencies, max(o[1] for o in outcomes), sum(o[2] for o in outcomes), cpu


def run_on_loop(coro):
    """The load generator's loop: uvloop like the servers, unless VIGIL_UVLOOP=0."""
    factory = None
    if os.environ.get("VIGIL_UVLOOP", "1").lower() not in ("0", "false", "no"):
        with contextlib.suppress(ImportError):
            import uvloop

            factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


# ---- peers ------------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not ready within {timeout}s")
        time.sleep(0.05)


def wait_line(proc: subprocess.Popen, word: str, timeout: float) -> None:
    """Wait for the peer's READY line (its stdout), failing fast when it exits."""
    deadline = time.monotonic() + timeout
    os.set_blocking(proc.stdout.fileno(), False)
    seen = b""
    while time.monotonic() < deadline:
        chunk = proc.stdout.read() or b""
        seen += chunk
        if word.encode() in seen:
            return
        if proc.poll() is not None:
            raise RuntimeError(f"peer exited with {proc.returncode}: {seen.decode(errors='replace')[-2000:]}")
        time.sleep(0.1)
    raise TimeoutError(f"no {word!r} within {timeout}s: {seen.decode(errors='replace')[-2000:]}")


def stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM (graceful), then SIGKILL of the process group this script started for it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def spawn(cmd: list[str], **kwargs) -> subprocess.Popen:
    # Own session: a peer that leaves children (Ray) can be killed as a group without touching others.
    return subprocess.Popen(cmd, start_new_session=True, **kwargs)


@contextlib.contextmanager
def floor_peer() -> Iterator[tuple[str, dict[str, int]]]:
    port = free_port()
    proc = spawn([sys.executable, str(BENCH / "peer_floor.py"), "--port", str(port)], stdout=subprocess.PIPE)
    try:
        wait_line(proc, "READY", 30)
        yield f"ws://127.0.0.1:{port}", {"server": proc.pid}
    finally:
        stop(proc)


@contextlib.contextmanager
def relay_peer(mode: str) -> Iterator[tuple[str, dict[str, int]]]:
    """The two-hop floor: bench/peer_relay.py in front of the floor's echo server. `mode`: "plain",
    "coalesce" or "batch" (the relay's option)."""
    echo_port, relay_port = free_port(), free_port()
    echo = spawn([sys.executable, str(BENCH / "peer_floor.py"), "--port", str(echo_port)], stdout=subprocess.PIPE)
    relay = None
    try:
        wait_line(echo, "READY", 30)
        relay = spawn(
            [sys.executable, str(BENCH / "peer_relay.py"), "--port", str(relay_port)]
            + ["--upstream", f"ws://127.0.0.1:{echo_port}"]
            + ([] if mode == "plain" else [f"--{mode}"]),
            stdout=subprocess.PIPE,
        )
        wait_line(relay, "READY", 30)
        yield f"ws://127.0.0.1:{relay_port}", {"relay": relay.pid, "echo": echo.pid}
    finally:
        if relay is not None:
            stop(relay)
        stop(echo)


@contextlib.contextmanager
def vigil_peer(
    log_level: str,
    log_path: Path,
    root: Path = REPO,
    batch_frames: bool = True,
    workers: int = 1,
    stripped: bool = False,
) -> Iterator[tuple[str, subprocess.Popen, subprocess.Popen]]:
    """MainBackend + backend of the tree at `root` (this checkout, or a worktree of an earlier
    commit for the `before` peer); their logs (both) go to `log_path`, as a container's go to its log file.
    `stripped`: both run under bench/stripped_chain.py (peer vigil-strip)."""
    backend_port, gateway_port = free_port(), free_port()
    backend_launcher = [sys.executable, str(STRIPPED_CHAIN), "backend"] if stripped else [sys.executable]
    gateway_launcher = [sys.executable, str(STRIPPED_CHAIN), "gateway"] if stripped else [sys.executable]
    env = {**os.environ, "PYTHONPATH": str(root / SHARED_SRC.relative_to(REPO)), "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory() as tmp, log_path.open("ab") as log:
        cfg = Path(tmp) / "models.yaml"
        cfg.write_text(
            f"main_backend:\n  host: 127.0.0.1\n  port: {gateway_port}\n  workers: {workers}\n"
            f"model_backends:\n  bench:\n    host: 127.0.0.1\n    port: {backend_port}\n    required: true\n"
            + ("" if batch_frames else "    batch_frames: false\n")
        )
        # The backend with its defaults (one model worker, queue 64): what a model backend ships with.
        backend = spawn(
            [*backend_launcher, str(root / CONTROLLED_BACKEND.relative_to(REPO)), "--host", "127.0.0.1"]
            + ["--port", str(backend_port)]
            + ["--log-level", log_level]
            # A no-op model declares itself cheap enough for the event loop (BaseModelBackend.run_inline).
            + (["--inline"] if INLINE_BACKEND else []),
            env=env,
            stdout=log,
            stderr=log,
        )
        gateway = None
        try:
            try:
                wait_http(f"http://127.0.0.1:{backend_port}/readyz", 30)
                gateway = spawn(
                    [*gateway_launcher, "main.py", "--config", str(cfg), "--log-level", log_level],
                    cwd=root / MAIN_BACKEND.relative_to(REPO),
                    env=env,
                    stdout=log,
                    stderr=log,
                )
                wait_http(f"http://127.0.0.1:{gateway_port}/readyz", 30)
            except TimeoutError:
                log.flush()
                print(log_path.read_text(errors="replace")[-3000:], file=sys.stderr)
                raise
            yield f"ws://127.0.0.1:{gateway_port}", gateway, backend
        finally:
            if gateway is not None:
                stop(gateway)
            stop(backend)


@contextlib.contextmanager
def worktree_at(ref: str) -> Iterator[Path]:
    """A detached git worktree of `ref` (removed afterwards): the `before` peer runs from it."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{ref}^{{commit}}"], capture_output=True, text=True
    )
    if commit.returncode != 0:
        raise SystemExit(f"--before {ref!r}: not a commit of this repository")
    path = Path(tempfile.mkdtemp(prefix="vigil-peers-before-"))
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(path), commit.stdout.strip()],
        check=True,
    )
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], check=False)


def ray_available(python: Path) -> str | None:
    """Why the Ray peer cannot run, or None."""
    if not python.exists():
        return f"{python} not found (python3 -m venv .venv-ray && .venv-ray/bin/pip install 'ray[serve]==2.60.*')"
    probe = subprocess.run(
        [str(python), "-c", "import ray, ray.serve, fastapi; print(ray.__version__)"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return f"{python} cannot import ray[serve]: {probe.stderr.strip().splitlines()[-1:]}"
    return None


def ray_log_name() -> str:
    logs = sorted(Path(tempfile.gettempdir()).glob("vigil-peers-ray-*.log"), key=lambda p: p.stat().st_mtime)
    return str(logs[-1]) if logs else "?"


@contextlib.contextmanager
def ray_peer(python: Path) -> Iterator[tuple[str, dict[str, int]]]:
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="vigil-peers-ray-", suffix=".log", delete=False)  # noqa: SIM115
    proc = spawn([str(python), str(BENCH / "peer_ray.py"), "--port", str(port)], stdout=subprocess.PIPE, stderr=log)
    try:
        try:
            wait_line(proc, "READY", 300)
        except (RuntimeError, TimeoutError):
            print(Path(log.name).read_text()[-3000:], file=sys.stderr)
            raise
        yield f"ws://127.0.0.1:{port}/", {"ray (all processes)": proc.pid}
    finally:
        stop(proc, timeout=60)


# ---- profiling --------------------------------------------------------------------------------


@contextlib.contextmanager
def py_spy(pids: dict[str, int], out: Path, rate: int, native: bool) -> Iterator[None]:
    """py-spy record of each pid, written on SIGINT. Only samples of the thread holding the GIL (--gil):
    py-spy's own idle test does not see a thread blocked in epoll or a queue, and these processes do
    their work with the GIL held (uvloop polls without it). Non-blocking (the target is never paused)
    unless `native`: C frames (uvloop, msgspec, syscalls) need the target paused per sample."""
    exe = Path(sys.executable).with_name("py-spy")
    if not exe.exists():
        found = shutil.which("py-spy")
        if found is None:
            raise SystemExit("--profile needs py-spy: .venv/bin/python -m pip install py-spy==0.4.3")
        exe = Path(found)
    files = {name: out / f"{name}.collapsed" for name in pids}
    procs = [
        subprocess.Popen(
            [str(exe), "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw", "--gil"]
            + (["--native"] if native else ["--nonblocking"])
            + ["--threads", "--nolineno", "-o", str(files[name])],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for name, pid in pids.items()
    ]
    time.sleep(1.0)  # attached before the load starts
    try:
        yield
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                _, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            if proc.returncode not in (0, None) and err:
                print(f"py-spy: {err.decode(errors='replace').strip()[-500:]}", file=sys.stderr)


# ---- report -----------------------------------------------------------------------------------


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def print_table(cells: list[Cell]) -> None:
    w = max(8, *(len(c.peer) for c in cells))
    print(
        f"{'peer':<{w}} {'conc':>4} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'requests':>9} {'errors':>6}  cpu ms/request"
    )
    for c in cells:
        cpu = ", ".join(f"{name} {ms:.3f}" for name, ms in c.cpu_ms.items())
        print(f"{c.peer:<{w}} {c.conc:>4} {c.p50:>8.3f} {c.p99:>8.3f} {c.rps:>8.0f} {c.count:>9} {c.errors:>6}  {cpu}")


def median_cells(rounds: list[list[Cell]]) -> list[Cell]:
    """Per (peer, concurrency), the median of each column over the rounds (requests and errors summed)."""
    groups: dict[tuple[str, int], list[Cell]] = {}
    for round_cells in rounds:
        for c in round_cells:
            groups.setdefault((c.peer, c.conc), []).append(c)
    return [
        Cell(
            peer,
            conc,
            median(c.p50 for c in group),
            median(c.p99 for c in group),
            median(c.rps for c in group),
            sum(c.count for c in group),
            sum(c.errors for c in group),
            {name: median(c.cpu_ms[name] for c in group) for name in group[0].cpu_ms},
        )
        for (peer, conc), group in groups.items()
    ]


def median_goal_ratios(rounds: list[list[Cell]], concs: list[int]) -> tuple[dict[str, float], list[str]]:
    """Each goal ratio taken within each round (its two peers measured minutes apart at most), the
    median of those, and the round-by-round values: a ratio of two medians could pair one peer's
    good round with the other's bad one."""
    per_round = [goal_ratios(round_cells, concs) for round_cells in rounds]
    keys = [
        k
        for k in ("rps_vs_floor", "p50_vs_floor", "rps_vs_ray", "strip_rps_vs_floor")
        if all(k in r for r in per_round)
    ]
    labels = {
        "rps_vs_floor": "req/s / floor",
        "p50_vs_floor": "p50 / floor",
        "rps_vs_ray": "req/s / ray",
        "strip_rps_vs_floor": "vigil-strip req/s / floor",
    }
    lines = [f"{labels[k]}, round by round: " + ", ".join(f"{r[k]:.3f}" for r in per_round) for k in keys]
    return {k: median(r[k] for r in per_round) for k in keys}, lines


def server_cpu(cell: Cell) -> float:
    return sum(ms for name, ms in cell.cpu_ms.items() if name != "client")


def ceiling(cell: Cell, cores: int) -> float:
    """Requests/s the machine could serve if every core ran only this peer and its client: a
    throughput figure that other load on a shared machine does not move (much)."""
    total = sum(cell.cpu_ms.values())
    return cores * 1000 / total if total > 0 else float("nan")  # nan: a cell too short to read any CPU


def goal_ratios(cells: list[Cell], concs: list[int]) -> dict[str, float]:
    """The three ratios issue 14 sets goals for, those whose peers ran."""
    by = {(c.peer, c.conc): c for c in cells}
    lo, hi = min(concs), max(concs)
    out = {}
    if ("vigil", hi) in by and ("floor", hi) in by:
        out["rps_vs_floor"] = by["vigil", hi].rps / by["floor", hi].rps
    if ("vigil", lo) in by and ("floor", lo) in by:
        out["p50_vs_floor"] = by["vigil", lo].p50 / by["floor", lo].p50
    if ("vigil", hi) in by and ("ray", hi) in by:
        out["rps_vs_ray"] = by["vigil", hi].rps / by["ray", hi].rps
    if ("vigil-strip", hi) in by and ("floor", hi) in by:
        out["strip_rps_vs_floor"] = by["vigil-strip", hi].rps / by["floor", hi].rps
    return out


def ratio_lines(cells: list[Cell], concs: list[int], goals: dict[str, float] | None = None, how: str = "") -> list[str]:
    """The ratios of `cells`; the goal lines from `goals` when given (the rounds' medians, `how`)."""
    by = {(c.peer, c.conc): c for c in cells}
    lo, hi = min(concs), max(concs)
    out = []

    def get(peer: str, conc: int) -> Cell | None:
        return by.get((peer, conc))

    v_hi, f_hi, r_hi = get("vigil", hi), get("floor", hi), get("ray", hi)
    v_lo, f_lo, r_lo = get("vigil", lo), get("floor", lo), get("ray", lo)
    goals = goal_ratios(cells, concs) if goals is None else goals
    if "rps_vs_floor" in goals:
        x = goals["rps_vs_floor"]
        out.append(
            f"vigil conc {hi} req/s / floor      = {x:6.3f}   (goal >= {GOAL_THROUGHPUT_VS_FLOOR}: "
            f"{'met' if x >= GOAL_THROUGHPUT_VS_FLOOR else 'not met'}){how}"
        )
    if "p50_vs_floor" in goals:
        x = goals["p50_vs_floor"]
        out.append(
            f"vigil conc {lo} p50 / floor        = {x:6.2f}x  (goal <= {GOAL_P50_VS_FLOOR}x: "
            f"{'met' if x <= GOAL_P50_VS_FLOOR else 'not met'}){how}"
        )
    if "rps_vs_ray" in goals:
        x = goals["rps_vs_ray"]
        out.append(
            f"vigil conc {hi} req/s / ray        = {x:6.1f}x  (goal >= {GOAL_VS_RAY}x: "
            f"{'met' if x >= GOAL_VS_RAY else 'not met'}){how}"
        )
    if "strip_rps_vs_floor" in goals:
        out.append(
            f"vigil-strip conc {hi} req/s / floor = {goals['strip_rps_vs_floor']:6.3f}   (the stripped chain, "
            f"bench/stripped_chain.py: an upper bound for vigil's own ratio, not a mode of the product){how}"
        )
    s_hi = get("vigil-strip", hi)
    if v_hi and s_hi:
        out.append(
            f"vigil / vigil-strip at conc {hi}: req/s {v_hi.rps / s_hi.rps:.2f}x, server CPU per request "
            f"{server_cpu(v_hi):.3f} vs {server_cpu(s_hi):.3f} ms"
        )
    if v_hi and f_hi:
        v_cpu, f_cpu = server_cpu(v_hi), server_cpu(f_hi)
        out.append(
            f"server CPU per request at conc {hi}: vigil {v_cpu:.3f} ms (gateway + backend), floor {f_cpu:.3f} ms "
            f"= {v_cpu / f_cpu if f_cpu > 0 else float('nan'):.1f}x"
        )
        cores = os.cpu_count() or 1
        out.append(
            f"CPU-bound ceiling on {cores} idle cores (cores / CPU ms per request, client included): "
            + ", ".join(f"{c.peer} {ceiling(c, cores):.0f} req/s" for c in (f_hi, v_hi, r_hi) if c)
            + f"; vigil/floor {ceiling(v_hi, cores) / ceiling(f_hi, cores):.3f}"
        )
    relays = [c for c in (get(name, hi) for name in RELAY_MODES) if c]
    relay_hi = max(relays, key=lambda c: c.rps) if relays else None
    if relay_hi and f_hi:
        out.append(
            f"two-hop floor ({relay_hi.peer}) conc {hi} req/s / floor = {relay_hi.rps / f_hi.rps:6.3f}   "
            "(a relay that only moves bytes: what two hops cost here before any protocol work)"
        )
        if v_hi:
            out.append(f"vigil conc {hi} req/s / two-hop floor  = {v_hi.rps / relay_hi.rps:6.3f}")
    relays_lo = [c for c in (get(name, lo) for name in RELAY_MODES) if c]
    relay_lo = min(relays_lo, key=lambda c: c.p50) if relays_lo else None
    if relay_lo and f_lo:
        out.append(f"two-hop floor ({relay_lo.peer}) conc {lo} p50 / floor = {relay_lo.p50 / f_lo.p50:6.2f}x")
        if v_lo:
            out.append(f"vigil conc {lo} p50 / two-hop floor   = {v_lo.p50 / relay_lo.p50:6.2f}x")
    for w_hi in (c for c in cells if c.peer.startswith("vigil-w") and c.conc == hi):
        if f_hi:
            out.append(
                f"{w_hi.peer} conc {hi} req/s / floor = {w_hi.rps / f_hi.rps:6.3f}   (the multi-process gateway; "
                f"goal >= {GOAL_THROUGHPUT_VS_FLOOR} is set for vigil)"
            )
        if v_hi:
            out.append(f"{w_hi.peer} / vigil at conc {hi}: req/s {w_hi.rps / v_hi.rps:.2f}x")
    nb_hi, nb_lo = get("vigil-nb", hi), get("vigil-nb", lo)
    if v_hi and nb_hi:
        out.append(
            f"batch frames on / off at conc {hi}: req/s {v_hi.rps / nb_hi.rps:.2f}x, server CPU per request "
            f"{server_cpu(v_hi):.3f} vs {server_cpu(nb_hi):.3f} ms"
        )
    if v_lo and nb_lo:
        out.append(f"batch frames on / off at conc {lo}: p50 {v_lo.p50:.3f} vs {nb_lo.p50:.3f} ms")
    b_hi, b_lo = get("before", hi), get("before", lo)
    if v_hi and b_hi:
        cores = os.cpu_count() or 1
        out.append(
            f"vigil / before at conc {hi}: req/s {v_hi.rps / b_hi.rps:.2f}x, server CPU per request "
            f"{server_cpu(v_hi):.3f} vs {server_cpu(b_hi):.3f} ms, ceiling {ceiling(v_hi, cores):.0f} vs "
            f"{ceiling(b_hi, cores):.0f} req/s"
        )
    if v_lo and b_lo:
        out.append(f"vigil / before at conc {lo}: p50 {v_lo.p50:.3f} vs {b_lo.p50:.3f} ms")
    if v_lo and r_lo:
        out.append(f"vigil conc {lo} req/s / ray        = {v_lo.rps / r_lo.rps:6.1f}x")
        out.append(f"ray conc {lo} p50 / vigil          = {r_lo.p50 / v_lo.p50:6.1f}x")
    return out


def run_peers(
    order: list[str], concs: list[int], args: argparse.Namespace, ray_python: Path, notes: list[str], profile: bool
) -> list[Cell]:
    """One round: every peer's cells, the peers one after the other in `order`."""
    cells: list[Cell] = []
    for peer in order:
        if peer == "floor":
            with floor_peer() as (url, procs):
                cells += [measure("floor", url, None, "inference_request", n, procs, args) for n in concs]
        elif peer in RELAY_MODES:
            with relay_peer(RELAY_MODES[peer]) as (url, procs):
                cells += [measure(peer, url, None, "inference_request", n, procs, args) for n in concs]
        elif peer == "vigil":
            log_path = Path(tempfile.gettempdir()) / f"vigil-peers-vigil-{os.getpid()}.log"
            notes.append(f"vigil: log level {args.log_level}, logs in {log_path}")
            with vigil_peer(args.log_level, log_path) as (url, gateway, backend):
                pids = {"gateway": gateway.pid, "backend": backend.pid}
                cells += [measure("vigil", url, "bench", "inference_response", n, pids, args) for n in concs]
                if profile and args.profile is not None:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    prof_args = argparse.Namespace(**{**vars(args), "seconds": args.profile_seconds, "requests": None})
                    with py_spy(pids, args.profile, args.profile_rate, args.profile_native):
                        profiled = measure("vigil", url, "bench", "inference_response", max(concs), pids, prof_args)
                    notes.append(
                        f"profiled cell (vigil conc {profiled.conc} under py-spy, not in the table): "
                        f"p50 {profiled.p50:.3f} ms, {profiled.rps:.0f} req/s"
                    )
        elif peer == "vigil-nb":
            log_path = Path(tempfile.gettempdir()) / f"vigil-peers-vigil-nb-{os.getpid()}.log"
            with vigil_peer(args.log_level, log_path, batch_frames=False) as (url, gateway, backend):
                pids = {"gateway": gateway.pid, "backend": backend.pid}
                cells += [measure(peer, url, "bench", "inference_response", n, pids, args) for n in concs]
        elif peer == "vigil-w":
            name = f"vigil-w{args.gateway_workers}"
            log_path = Path(tempfile.gettempdir()) / f"vigil-peers-{name}-{os.getpid()}.log"
            notes.append(f"{name}: {args.gateway_workers} gateway processes (workers), logs in {log_path}")
            with vigil_peer(args.log_level, log_path, workers=args.gateway_workers) as (url, gateway, backend):
                # The gateway's CPU is its supervisor's and every worker's (cpu_seconds walks the tree).
                pids = {"gateway": gateway.pid, "backend": backend.pid}
                cells += [measure(name, url, "bench", "inference_response", n, pids, args) for n in concs]
        elif peer == "vigil-strip":
            log_path = Path(tempfile.gettempdir()) / f"vigil-peers-vigil-strip-{os.getpid()}.log"
            notes.append(f"vigil-strip: the stripped chain (bench/stripped_chain.py), logs in {log_path}")
            with vigil_peer(args.log_level, log_path, stripped=True) as (url, gateway, backend):
                pids = {"gateway": gateway.pid, "backend": backend.pid}
                cells += [measure(peer, url, "bench", "inference_response", n, pids, args) for n in concs]
        elif peer == "before":
            if args.before is None:
                raise SystemExit("peer 'before' needs --before REF (e.g. --before HEAD~5)")
            log_path = Path(tempfile.gettempdir()) / f"vigil-peers-before-{os.getpid()}.log"
            notes.append(f"before: vigil at {args.before}, logs in {log_path}")
            with worktree_at(args.before) as root, vigil_peer(args.log_level, log_path, root) as (url, gw, be):
                pids = {"gateway": gw.pid, "backend": be.pid}
                cells += [measure("before", url, "bench", "inference_response", n, pids, args) for n in concs]
        elif peer == "ray":
            why_not = ray_available(ray_python)
            if why_not:
                notes.append(f"ray: skipped: {why_not}")
                continue
            started = time.monotonic()
            with ray_peer(ray_python) as (url, procs):
                notes.append(f"ray: started in {time.monotonic() - started:.0f} s (its log: {ray_log_name()})")
                cells += [measure("ray", url, None, "inference_response", n, procs, args) for n in concs]
    return cells


# ---- main -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--peers",
        nargs="+",
        default=["floor", "relay", "vigil", "ray"],
        choices=["floor", *RELAY_MODES, "vigil", "vigil-nb", "vigil-w", "vigil-strip", "before", "ray"],
    )
    parser.add_argument(
        "--gateway-workers", type=int, default=2, metavar="N", help="peer vigil-w: gateway processes (default 2)"
    )
    parser.add_argument(
        "--load-procs",
        type=int,
        default=1,
        metavar="N",
        help="load generator processes sharing each cell's connections (default 1; use 2+ on many cores)",
    )
    parser.add_argument(
        "--before", default=None, metavar="REF", help="peer `before`: vigil at this git commit (a worktree), same load"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument(
        "--rounds", type=int, default=1, help="run every peer this many times, rotating the order; report medians"
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="measured time per cell (default 4)")
    parser.add_argument("--requests", type=int, default=None, help="requests per connection instead of --seconds")
    parser.add_argument("--warmup", type=int, default=100, help="requests per connection before measuring")
    parser.add_argument("--payload", type=int, default=1024, help="bytes of payload in `data` (default 1024)")
    parser.add_argument("--ray-python", type=Path, default=REPO / ".venv-ray" / "bin" / "python")
    parser.add_argument("--log-level", default="WARNING", help="vigil processes' log level (default WARNING)")
    parser.add_argument("--json", type=Path, default=None, help="also write the cells and ratios here (JSON)")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the vigil processes into this folder")
    parser.add_argument("--profile-seconds", type=float, default=10.0)
    parser.add_argument("--profile-rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--profile-native", action="store_true", help="py-spy --native (pauses the target per sample)")
    args = parser.parse_args()
    if args.gateway_workers < 1 or args.load_procs < 1 or args.rounds < 1:
        parser.error("--gateway-workers, --load-procs and --rounds take 1 or more")
    concs = sorted(set(args.concurrency))
    ray_python = args.ray_python if args.ray_python.is_absolute() else REPO / args.ray_python

    print(f"load average before: {load_average()}  (cores: {os.cpu_count()})")
    print(
        f"payload {args.payload} B, one request in flight per connection, "
        + (f"{args.requests} requests/connection" if args.requests else f"{args.seconds:g} s")
        + " per cell"
        + (f", load generator split over {args.load_procs} processes" if args.load_procs > 1 else "")
    )
    rounds: list[list[Cell]] = []
    notes: list[str] = []
    for index in range(args.rounds):
        # Each round starts one peer later: drift in the machine's load hits every peer alike.
        shift = index % len(args.peers)
        order = args.peers[shift:] + args.peers[:shift]
        rounds.append(run_peers(order, concs, args, ray_python, notes, profile=index == 0))
    notes = list(dict.fromkeys(notes))
    cells = rounds[0] if len(rounds) == 1 else median_cells(rounds)
    if len(rounds) > 1:
        for index, round_cells in enumerate(rounds, 1):
            print(f"\nround {index} of {len(rounds)}")
            print_table(round_cells)
        print(f"\nmedian of {len(rounds)} rounds (each column on its own)")
    print()
    print_table(cells)
    print()
    if len(rounds) == 1:
        ratios = ratio_lines(cells, concs)
    else:
        goals, per_round = median_goal_ratios(rounds, concs)
        ratios = ratio_lines(cells, concs, goals, f"  median of {len(rounds)} rounds' ratios") + per_round
    for line in ratios:
        print(line)
    for note in notes:
        print(note)
    print(f"load average after: {load_average()}")
    if args.json is not None:
        record = {
            "cores": os.cpu_count(),
            "load_average_after": load_average(),
            "payload_bytes": args.payload,
            "cells": [dataclasses.asdict(c) for c in cells],
            "rounds": [[dataclasses.asdict(c) for c in round_cells] for round_cells in rounds],
            "ratios": ratios,
            "notes": notes,
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    if args.profile is not None:
        for name in ("gateway", "backend"):
            path = args.profile / f"{name}.collapsed"
            print()
            if path.exists() and path.stat().st_size:
                print(f"== py-spy: {name} ({path}) ==")
                print(summarize(path.read_text().splitlines()))
            else:
                print(f"== py-spy: {name}: no samples written ({path}) ==")
    return 1 if any(c.errors for c in cells) else 0


if __name__ == "__main__":
    sys.exit(main())
