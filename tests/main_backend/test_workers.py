"""The main backend with `--workers 2`: a supervisor and two worker processes sharing one port
(SO_REUSEPORT), against the controlled test backend as a real process.

Which worker holds a connection is observable: `pong.worker` (and `/readyz`'s `worker`) is the
worker's index when workers > 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from support.net import REPO, BackendProcess, connect_ws, free_port, http_get, rpc, wait_http
from vigil_main_backend.config import Config
from vigil_main_backend.metrics import REFRESH_INTERVAL, ReplicaMirror
from vigil_main_backend.workers import budget_warning, per_worker_config

MAIN_DIR = REPO / "services" / "main_backend"
MAX_MESSAGE_SIZE = 65536


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=90))


def gateway_env() -> dict[str, str]:
    # No PROMETHEUS_MULTIPROC_DIR from the caller: the supervisor makes its own.
    return {"PYTHONPATH": str(REPO / "shared_protocol" / "src"), "PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}


def write_config(path: Path, gateway_port: int, backend_port: int) -> Path:
    path.write_text(
        f"main_backend:\n  host: 127.0.0.1\n  port: {gateway_port}\n  health_interval: 0.5\n"
        f"  max_message_size: {MAX_MESSAGE_SIZE}\n  grace_period: 10\n"
        f"model_backends:\n  eeg:\n    host: 127.0.0.1\n    port: {backend_port}\n    required: true\n"
        "    reconnect_interval: 0.2\n    request_timeout: 10\n"
    )
    return path


class Gateway:
    """`main.py --workers 2` as a subprocess; its log (supervisor and workers) goes to a file."""

    def __init__(self, tmp: Path, backend_port: int, *extra: str, metrics_dir: Path | None = None) -> None:
        self.port = free_port()
        self.metrics_dir = metrics_dir  # PROMETHEUS_MULTIPROC_DIR given by the operator, else the supervisor's own
        self.config = write_config(tmp / "models.yaml", self.port, backend_port)
        self.log_path = tmp / "gateway.log"
        self.extra = extra
        self.proc: subprocess.Popen | None = None

    def start(self) -> Gateway:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "main.py", "--config", str(self.config), "--workers", "2", *self.extra],
                cwd=MAIN_DIR,
                env={
                    **gateway_env(),
                    **({"PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir)} if self.metrics_dir else {}),
                },
                stdout=log,
                stderr=log,
            )
        wait_http(f"http://127.0.0.1:{self.port}/readyz", timeout=60)
        self.wait_listening(2)
        return self

    def wait_listening(self, count: int, timeout: float = 60) -> None:
        """Until `count` workers (started ones included) have logged that they listen."""
        deadline = time.monotonic() + timeout
        while self.log().count("listening (pid") < count:
            assert self.proc.poll() is None, self.log()[-3000:]
            assert time.monotonic() < deadline, self.log()[-3000:]
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> set[int]:
        """The supervisor's children (read from /proc: no extra dependency)."""
        assert self.proc is not None
        pids = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.proc.pid and fields[0] != "Z":
                    pids.add(int(stat.parent.name))
        return pids

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def backend():
    with BackendProcess(free_port()) as proc:
        yield proc


@pytest.fixture(scope="module")
def gateway(backend, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("workers")
    metrics_dir = tmp / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"left by an earlier run: not a valid file")  # must be cleaned
    gw = Gateway(tmp, backend.port, metrics_dir=metrics_dir).start()
    try:
        yield gw
    finally:
        gw.stop()


async def worker_of(ws) -> int:
    return (await rpc(ws, {"type": "health_check"}))["worker"]


async def connections_on_both(url: str, tries: int = 64) -> dict[int, list]:
    """Open connections until both workers hold at least one; {worker index: [connections]}."""
    by_worker: dict[int, list] = {}
    for _ in range(tries):
        ws = await connect_ws(url)
        by_worker.setdefault(await worker_of(ws), []).append(ws)
        if len(by_worker) == 2 and sum(len(c) for c in by_worker.values()) >= 8:
            return by_worker
    raise AssertionError(f"after {tries} connections only workers {sorted(by_worker)} answered")


async def close_all(by_worker: dict[int, list]) -> None:
    for conns in by_worker.values():
        for ws in conns:
            await ws.close()


async def echo(ws, request_id: str, **data) -> dict:
    msg = {"type": "inference_request", "request_id": request_id, "model": "eeg", "data": {"op": "echo", **data}}
    return await rpc(ws, msg)


def metric(body: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text page, labels in any order (0 when absent: a counter that
    was never incremented)."""
    for line in body.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if match and match.group(1) == name and dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or "")) == labels:
            return float(match.group(3))
    return 0.0


def scrape(port: int) -> str:
    code, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert code == 200
    return body


# ---- configuration (no processes) -------------------------------------------------------------


def test_per_process_limits_are_divided_among_workers():
    config = Config.model_validate(
        {"main_backend": {"port": 8765, "workers": 3, "max_connections": 256, "max_pending_bytes": 300 * 2**20}}
    )
    share = per_worker_config(config).main_backend
    assert share.max_connections == 85 and share.max_connections * 3 <= 256
    assert share.max_pending_bytes == 100 * 2**20
    # Per-connection limits are the same in every worker.
    assert share.max_in_flight_per_connection == config.main_backend.max_in_flight_per_connection
    assert share.max_pending_bytes_per_connection == config.main_backend.max_pending_bytes_per_connection
    one = Config.model_validate({"main_backend": {"port": 8765}})
    assert per_worker_config(one) is one and one.main_backend.workers == 1
    assert budget_warning(config) is None
    tight = Config.model_validate({"main_backend": {"port": 8765, "workers": 8}})  # 32 MiB < 3 x 16 MiB
    assert "raise max_pending_bytes" in budget_warning(tight)


class FakePool:
    """What ReplicaMirror reads from a ReplicaPool: its replica_report()."""

    def __init__(self) -> None:
        self.replicas: dict[str, dict] = {}

    def replica_report(self) -> dict:
        healthy = len(self.replicas)
        return {"healthy": healthy, "connected": healthy, "total": healthy, "replicas": self.replicas}


def test_replica_mirror_turns_pool_counts_into_counters_that_survive_a_rejoin():
    from prometheus_client import CollectorRegistry

    mirror = ReplicaMirror(worker=1)
    registry = CollectorRegistry()
    for collector in (mirror.counts, mirror.in_flight, mirror.requests, mirror.errors):
        registry.register(collector)
    pool = FakePool()
    pools = {"eeg": pool}

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"backend": "eeg", **labels})

    pool.replicas["r1"] = {"in_flight": 3, "requests": 5, "errors_by_code": {"timeout": 1}}
    mirror.update(pools)
    pool.replicas["r1"] = {"in_flight": 1, "requests": 8, "errors_by_code": {"timeout": 2}}
    mirror.update(pools)
    assert value("vigil_replica_requests_total", replica="r1") == 8
    assert value("vigil_replica_errors_total", replica="r1", code="timeout") == 2
    assert value("vigil_replica_in_flight", replica="r1") == 1
    assert value("vigil_backend_replicas", state="total", worker="1") == 1
    del pool.replicas["r1"]  # the replica left: nothing in flight there any more
    mirror.update(pools)
    assert value("vigil_replica_in_flight", replica="r1") == 0
    assert value("vigil_backend_replicas", state="total", worker="1") == 0
    # It rejoins: the pool counts from 0 again; the counter goes on from 8.
    pool.replicas["r1"] = {"in_flight": 0, "requests": 9, "errors_by_code": {}}
    mirror.update(pools)
    assert value("vigil_replica_requests_total", replica="r1") == 17
    assert value("vigil_replica_errors_total", replica="r1", code="timeout") == 2


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--workers", "2", "--port", "0"], {}, "workers > 1 needs a fixed port"),
        (["--workers", "0"], {}, "main_backend.workers (VIGIL_GATEWAY_WORKERS)"),
        ([], {"VIGIL_GATEWAY_WORKERS": "two"}, "main_backend.workers (VIGIL_GATEWAY_WORKERS)"),
    ],
)
def test_bad_worker_config_exits_2_before_any_worker_starts(tmp_path, args, env, expected):
    cfg = write_config(tmp_path / "models.yaml", free_port(), free_port())
    result = subprocess.run(
        [sys.executable, "main.py", "--config", str(cfg), *args],
        cwd=MAIN_DIR,
        env={**gateway_env(), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "worker 0 started" not in result.stderr


def test_bad_backend_config_with_workers_exits_2(tmp_path):
    cfg = tmp_path / "models.yaml"
    cfg.write_text("main_backend:\n  port: 18000\n  workers: 2\nmodel_backends:\n  eeg:\n    port: nope\n")
    result = subprocess.run(
        [sys.executable, "main.py", "--config", str(cfg)],
        cwd=MAIN_DIR,
        env=gateway_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "model_backends.eeg.port" in result.stderr


# ---- a running gateway with two workers ------------------------------------------------------------


def test_both_workers_serve_and_metrics_count_every_worker(gateway, backend):
    async def scenario():
        before = scrape(gateway.port)
        by_worker = await connections_on_both(gateway.url)
        sent = 0
        try:
            for index, conns in by_worker.items():
                for n, ws in enumerate(conns):
                    reply = await echo(ws, f"w{index}-{n}", who=index)
                    assert reply["type"] == "inference_response", reply
                    assert reply["data"]["echo"]["who"] == index
                    sent += 1
        finally:
            await close_all(by_worker)
        return before, sent, {index: len(conns) for index, conns in by_worker.items()}

    before, sent, per_worker = run(scenario())
    assert set(per_worker) == {0, 1}
    replica = f"127.0.0.1:{backend.port}"
    requests = ("vigil_backend_requests_total", {"backend": "eeg"})
    relayed = ("vigil_client_messages_total", {"type": "inference_request"})
    replica_requests = ("vigil_replica_requests_total", {"backend": "eeg", "replica": replica})
    # Several scrapes land on either worker: each one reports the whole gateway.
    deadline = time.monotonic() + 10
    while True:
        bodies = [scrape(gateway.port) for _ in range(6)]
        deltas = {
            (name, tuple(labels.items())): {metric(b, name, **labels) - metric(before, name, **labels) for b in bodies}
            for name, labels in (requests, relayed, replica_requests)
        }
        # The per-replica counters are copied from each worker's memory once a second.
        if all(values == {sent} for values in deltas.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert all(values == {sent} for values in deltas.values()), (sent, deltas)
    body = bodies[-1]
    for index in (0, 1):  # replica counts are per worker (each has its own connection)
        assert metric(body, "vigil_backend_replicas", backend="eeg", state="connected", worker=str(index)) == 1
    assert metric(body, "vigil_backend_up", backend="eeg") == 1
    assert metric(body, "vigil_backend_latency_seconds_count", backend="eeg") >= sent


def test_hostile_input_on_one_worker_never_affects_the_other(gateway):
    pids = gateway.worker_pids()
    assert len(pids) == 2

    async def scenario():
        by_worker = await connections_on_both(gateway.url)
        try:
            victim, bystander = by_worker[0][0], by_worker[1][0]
            # Garbage: one error reply, the connection stays.
            reply = await rpc(victim, '{"type": "inference_request", "request_id": "g", "data": {"op": ')
            assert reply["type"] == "error" and reply["code"] == "bad_request"
            reply = await rpc(victim, json.dumps({"type": "inference_request", "request_id": "n", "model": "x"}))
            assert reply["type"] == "error"
            # A frame over max_message_size closes that connection only (1009).
            await victim.send("x" * (MAX_MESSAGE_SIZE + 1))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(victim.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
            # The other worker's connection and the victim's worker go on serving.
            assert (await echo(bystander, "b1"))["type"] == "inference_response"
            for ws in by_worker[0][1:]:
                assert (await echo(ws, "v1"))["type"] == "inference_response"
        finally:
            await close_all(by_worker)

    run(scenario())
    assert gateway.worker_pids() == pids  # no worker died or was restarted


def test_killed_worker_is_restarted_and_serves(gateway):
    pids = gateway.worker_pids()
    assert len(pids) == 2
    # Each worker flushes its tallies into the shared files every REFRESH_INTERVAL: after two of
    # them without traffic, every count is in the files, where a killed worker's stay.
    time.sleep(2 * REFRESH_INTERVAL + 0.5)
    counted = metric(scrape(gateway.port), "vigil_client_messages_total", type="health_check")
    assert counted > 0
    victim = min(pids)
    assert (gateway.metrics_dir / f"counter_{victim}.db").exists()
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        now = gateway.worker_pids()
        if len(now) == 2 and victim not in now:
            break
        assert time.monotonic() < deadline, f"worker not replaced: {now}, log:\n{gateway.log()[-3000:]}"
        time.sleep(0.1)
    assert f"(pid {victim}) killed by SIGKILL after it listened; restarting" in gateway.log()
    wait_http(f"http://127.0.0.1:{gateway.port}/readyz", timeout=60)

    gateway.wait_listening(3)  # the replacement too
    # The dead worker's counts stay in the sums, folded into one archive file.
    assert not (gateway.metrics_dir / f"counter_{victim}.db").exists()
    assert (gateway.metrics_dir / "counter_archive.db").exists()
    assert metric(scrape(gateway.port), "vigil_client_messages_total", type="health_check") == counted

    async def scenario():
        by_worker = await connections_on_both(gateway.url)
        try:
            for conns in by_worker.values():
                assert (await echo(conns[0], "after-restart"))["type"] == "inference_response"
        finally:
            await close_all(by_worker)

    run(scenario())


def test_sigterm_drains_every_worker_and_exits_0(backend, tmp_path):
    gw = Gateway(tmp_path, backend.port).start()
    try:

        async def scenario():
            by_worker = await connections_on_both(gw.url)
            conns = [ws for group in by_worker.values() for ws in group]
            try:
                # In flight on both workers when SIGTERM arrives; the backend runs them one at a time
                # (>= 8 x 200 ms), well inside the 10 s grace period.
                for n, ws in enumerate(conns):
                    msg = {"type": "inference_request", "request_id": f"d{n}", "model": "eeg"}
                    await ws.send(json.dumps({**msg, "data": {"op": "sleep", "ms": 200}}))
                await asyncio.sleep(0.1)
                gw.proc.send_signal(signal.SIGTERM)
                replies = [json.loads(await asyncio.wait_for(ws.recv(), 20)) for ws in conns]
            finally:
                for ws in conns:
                    with contextlib.suppress(Exception):
                        await ws.close()
            return replies, set(by_worker)

        replies, workers = run(scenario())
        assert workers == {0, 1}
        assert [r["type"] for r in replies] == ["inference_response"] * len(replies), replies
        assert gw.proc.wait(timeout=30) == 0, gw.log()[-3000:]
        assert gw.log().count("main backend stopped") == 2
        # The supervisor's own metrics directory is removed on the way out.
        made = re.search(r"metrics of every worker in (\S+)", gw.log())
        assert made and not Path(made.group(1)).exists()
    finally:
        gw.stop()


def test_port_taken_makes_the_supervisor_give_up(backend, tmp_path):
    gw = Gateway(tmp_path, backend.port)
    with socket.socket() as taken:  # a listener without SO_REUSEPORT: no worker can bind
        taken.bind(("127.0.0.1", gw.port))
        taken.listen()
        proc = subprocess.Popen(
            [sys.executable, "main.py", "--config", str(gw.config), "--workers", "2"],
            cwd=MAIN_DIR,
            env=gateway_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 1, stderr[-3000:]
    assert "giving up" in stderr and "before it listened" in stderr


def test_workers_leave_when_the_supervisor_is_killed(backend, tmp_path):
    # A directory of the test's own: a killed supervisor cannot remove the one it would make.
    gw = Gateway(tmp_path, backend.port, metrics_dir=tmp_path / "metrics").start()
    try:
        pids = gw.worker_pids()
        assert len(pids) == 2
        gw.proc.kill()  # SIGKILL: no forwarding; the workers must notice on their own
        gw.proc.wait(timeout=10)
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in pids):
            assert time.monotonic() < deadline, f"orphaned workers still running: {pids}"
            time.sleep(0.1)
        assert gw.log().count("the supervisor (pid") == 2
    finally:
        gw.stop()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
