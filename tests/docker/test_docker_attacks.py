"""Issue 10's memory attacks, sent through the gateway of the real compose stack (all four services,
compose.yaml's default limits): image bombs, pipelined near-16 MiB number floods, a 5000-digit
integer and a lone surrogate.

After every attack, for every container: not restarted (RestartCount, StartedAt), not OOM-killed,
memory below its compose limit (sampled every 0.5 s during the attack, plus the cgroup's own peak),
no traceback in its log, and no gateway->backend connection dropped. The module prints one table
(attack, reply codes, peak MiB per container, restarted?) for the issue's closing note.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import attack_payloads as payloads
import pytest
from dockerlib import MAIN_SERVICE, MODEL_SERVICE_PORTS, load_samples, rpc, run_docker, ws_client
from test_docker_stack import ALL_HEALTHY_TIMEOUT_S, Stack, running_stack, wait_gateway
from websockets.sync.client import ClientConnection

pytestmark = [pytest.mark.docker, pytest.mark.timeout(60 * 60)]
logger = logging.getLogger(__name__)

SERVICES = [MAIN_SERVICE, *sorted(MODEL_SERVICE_PORTS)]
SAMPLE_INTERVAL_S = 0.5
REPLY_TIMEOUT_S = 120.0  # the whole batch of replies of one attack, on 2 shared cores
QUIET_S = 3.0  # after the last expected reply: any further frame would be a second reply
FLOOD_PIPELINE = 6  # frames sent back to back on one connection (issue 10: six killed the gateway)
FLOOD_CONNECTIONS = 4  # ... and this many connections at once, FLOOD_PER_CONNECTION frames each
FLOOD_PER_CONNECTION = 3
MAX_VALUES_TEXT = "at most 2000000"  # the eeg backend's MAX_CHUNK_VALUES refusal
BACKEND_CONNECTED = re.compile(r"backend (\w+) connected at")
BACKEND_DISCONNECTED = re.compile(r"backend (\w+) disconnected")


# ---- container state and memory -------------------------------------------------------------------


@dataclass
class Container:
    service: str
    cid: str
    limit: int  # bytes, HostConfig.Memory (compose's deploy.resources.limits.memory)

    @property
    def host_cgroup(self) -> Path | None:
        """The container's memory cgroup on this host, when the engine runs here (cgroup v1 or v2)."""
        for path in (
            Path(f"/sys/fs/cgroup/memory/docker/{self.cid}"),
            Path(f"/sys/fs/cgroup/system.slice/docker-{self.cid}.scope"),
            Path(f"/sys/fs/cgroup/docker/{self.cid}"),
        ):
            if path.is_dir():
                return path
        return None


def _inspect(setup: dict[str, str], cid: str) -> dict[str, Any]:
    return json.loads(run_docker(setup, "inspect", cid))[0]


def _state(setup: dict[str, str], container: Container) -> dict[str, Any]:
    info = _inspect(setup, container.cid)
    state = info["State"]
    return {
        "restarts": info["RestartCount"],
        "oom_killed": state["OOMKilled"],
        "running": state["Running"],
        "started_at": state["StartedAt"],
    }


def _usage_no_cache(cgroup: Path) -> int:
    """What `docker stats` shows: usage minus inactive page cache."""
    stat = dict(line.split() for line in (cgroup / "memory.stat").read_text().splitlines())
    if (cgroup / "memory.usage_in_bytes").exists():  # cgroup v1
        return int((cgroup / "memory.usage_in_bytes").read_text()) - int(stat.get("total_inactive_file", 0))
    return int((cgroup / "memory.current").read_text()) - int(stat.get("inactive_file", 0))


_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "kB": 1000, "MB": 1000**2, "GB": 1000**3}


def _parse_size(text: str) -> int:
    match = re.fullmatch(r"([\d.]+)\s*([A-Za-z]+)", text.strip())
    assert match, text
    return int(float(match.group(1)) * _UNITS[match.group(2)])


class MemorySampler(threading.Thread):
    """Largest memory use of every container while running: the host's cgroup files when the engine
    runs on this host, else `docker stats --no-stream` (slower: one sample per call)."""

    def __init__(self, setup: dict[str, str], containers: list[Container]) -> None:
        super().__init__(daemon=True)
        self.setup = setup
        self.containers = containers
        self.peaks: dict[str, int] = {c.service: 0 for c in containers}
        self.samples = 0
        self.errors: list[str] = []
        self._stop_event = threading.Event()
        self.source = "cgroup" if all(c.host_cgroup for c in containers) else "docker stats"

    def _sample(self) -> dict[str, int]:
        if self.source == "cgroup":  # a restarting container has no cgroup for a moment
            return {c.service: _usage_no_cache(c.host_cgroup) for c in self.containers if c.host_cgroup}
        out = run_docker(
            self.setup, "stats", "--no-stream", "--format", "{{json .}}", *(c.cid for c in self.containers), timeout=30
        )
        by_id = {json.loads(line)["ID"][:12]: json.loads(line) for line in out.splitlines() if line.strip()}
        return {c.service: _parse_size(by_id[c.cid[:12]]["MemUsage"].split("/")[0]) for c in self.containers}

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                for service, used in self._sample().items():
                    self.peaks[service] = max(self.peaks[service], used)
                self.samples += 1
            except Exception as exc:  # a container gone mid-sample is reported, not fatal
                self.errors.append(repr(exc))
            self._stop_event.wait(SAMPLE_INTERVAL_S)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=60)


def _reset_cgroup_peak(container: Container) -> bool:
    """cgroup v1 on this host: zero max_usage_in_bytes so the peak read later is this attack's."""
    cgroup = container.host_cgroup
    if cgroup is None or not (cgroup / "memory.max_usage_in_bytes").exists():
        return False
    try:
        (cgroup / "memory.max_usage_in_bytes").write_text("0")
    except OSError:
        return False
    return True


def _cgroup_peak(setup: dict[str, str], container: Container) -> int | None:
    """The kernel's own high-water mark (page cache included), read inside the container."""
    out = run_docker(
        setup,
        "exec",
        container.cid,
        "cat",
        "/sys/fs/cgroup/memory/memory.max_usage_in_bytes",
        "/sys/fs/cgroup/memory.peak",
        check=False,
        timeout=30,
    )
    values = [int(line) for line in out.split() if line.strip().isdigit()]
    return values[0] if values else None


def _log_counts(setup: dict[str, str], container: Container) -> dict[str, Any]:
    """Backend (dis)connections logged by the gateway, and tracebacks, in the container's whole log."""
    proc = subprocess.run(
        [setup["VIGIL_DOCKER"], "logs", container.cid], capture_output=True, text=True, timeout=60, check=False
    )
    text = proc.stdout + proc.stderr
    return {
        "connected": Counter(BACKEND_CONNECTED.findall(text)),
        "disconnected": Counter(BACKEND_DISCONNECTED.findall(text)),
        "tracebacks": text.count("Traceback (most recent call last)"),
        "text": text,
    }


# ---- one attack ---------------------------------------------------------------------------------


@dataclass
class AttackRecord:
    name: str
    replies: Counter = field(default_factory=Counter)
    messages: Counter = field(default_factory=Counter)  # (code, error text) of every error seen
    sampled_peak: dict[str, int] = field(default_factory=dict)
    cgroup_peak: dict[str, int | None] = field(default_factory=dict)
    cgroup_peak_is_attack_only: bool = False
    before: dict[str, dict] = field(default_factory=dict)
    after: dict[str, dict] = field(default_factory=dict)
    reconnects: dict[str, int] = field(default_factory=dict)
    new_tracebacks: dict[str, str] = field(default_factory=dict)
    sampler_source: str = ""
    sampler_samples: int = 0
    sampler_errors: list[str] = field(default_factory=list)

    def count(self, reply: dict[str, Any]) -> None:
        self.replies.update(reply_codes(reply))
        if reply.get("type") == "error":
            self.messages[(reply.get("code"), str(reply.get("error"))[:300])] += 1
        for name, err in ((reply.get("data") or {}).get("errors") or {}).items():
            self.messages[(f"{name}:{err.get('code')}", str(err.get("error"))[:300])] += 1

    def restarted(self, service: str) -> bool:
        before, after = self.before[service], self.after[service]
        return (
            after["restarts"] != before["restarts"]
            or (after["oom_killed"] and not before["oom_killed"])  # the flag stays set after a restart
            or not after["running"]
            or after["started_at"] != before["started_at"]
        )


def reply_codes(reply: dict[str, Any]) -> list[str]:
    """'error:overloaded', 'analyze_response fatigue:bad_request', ... one entry per code seen."""
    if reply.get("type") == "error":
        return [f"error:{reply.get('code')}"]
    if reply.get("type") == "analyze_response":
        data = reply.get("data") or {}
        codes = [f"{name}:{err.get('code')}" for name, err in sorted((data.get("errors") or {}).items())]
        codes += [f"{name}:ok" for name in sorted(data.get("results") or {})]
        return ["analyze " + " ".join(codes)]
    return [str(reply.get("type"))]


class AttackBench:
    """The running stack plus what every attack needs: its containers, a port, the report rows."""

    def __init__(self, setup: dict[str, str], stack: Stack) -> None:
        self.setup = setup
        self.stack = stack
        self.containers = [self._container(name) for name in SERVICES]
        self.records: list[AttackRecord] = []
        self.eeg_sample = load_samples("eeg")
        self.fatigue_sample = load_samples("fatigue")

    def _container(self, service: str) -> Container:
        cid = _inspect(self.setup, self.stack.container_id(service))["Id"]
        limit = int(_inspect(self.setup, cid)["HostConfig"]["Memory"])
        assert limit > 0, f"{service} has no memory limit: compose.yaml's deploy.resources.limits did not apply"
        return Container(service, cid, limit)

    @property
    def port(self) -> int:
        """The gateway's published port, read again each time (a restarted container may get another,
        and has none while it restarts)."""
        deadline = time.monotonic() + 120
        while True:
            try:
                return self.stack.main_port()
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def wait_all_healthy(self, timeout: float = 120.0) -> None:
        def healthy(pong: dict) -> bool:
            return pong.get("status") == "healthy" and all(
                pong["backends"][name]["status"] == "healthy" for name in MODEL_SERVICE_PORTS
            )

        wait_gateway(self.port, healthy, timeout, "every backend healthy")

    @contextlib.contextmanager
    def attack(self, name: str) -> Iterator[AttackRecord]:
        self.wait_all_healthy()
        record = AttackRecord(name)
        record.before = {c.service: _state(self.setup, c) for c in self.containers}
        logs_before = {c.service: _log_counts(self.setup, c) for c in self.containers}
        record.cgroup_peak_is_attack_only = all([_reset_cgroup_peak(c) for c in self.containers])
        sampler = MemorySampler(self.setup, self.containers)
        sampler.start()
        failure: BaseException | None = None
        try:
            yield record
        except BaseException as exc:
            failure = exc
            raise
        finally:
            time.sleep(2 * SAMPLE_INTERVAL_S)  # memory freed late (after the reply) is still seen
            sampler.stop()
            record.sampled_peak = dict(sampler.peaks)
            record.sampler_source, record.sampler_samples = sampler.source, sampler.samples
            record.sampler_errors = sampler.errors[:5]
            record.cgroup_peak = {c.service: _cgroup_peak(self.setup, c) for c in self.containers}
            record.after = {c.service: _state(self.setup, c) for c in self.containers}
            for c in self.containers:
                logs_after = _log_counts(self.setup, c)
                if c.service == MAIN_SERVICE:
                    for backend in MODEL_SERVICE_PORTS:
                        record.reconnects[backend] = (
                            logs_after["connected"][backend]
                            - logs_before[c.service]["connected"][backend]
                            + logs_after["disconnected"][backend]
                            - logs_before[c.service]["disconnected"][backend]
                        )
                if logs_after["tracebacks"] > logs_before[c.service]["tracebacks"]:
                    record.new_tracebacks[c.service] = logs_after["text"][-4000:]
            self.records.append(record)
            logger.info("attack %r: %s", name, format_row(record, self.containers))
            if failure is not None:
                # A killed or restarted container explains a failed reply better than the reply does.
                try:
                    self.assert_unharmed(record)
                except AssertionError as harm:
                    raise harm from failure

    def assert_unharmed(self, record: AttackRecord) -> None:
        problems = []
        for c in self.containers:
            if record.restarted(c.service):
                problems.append(
                    f"{c.service} restarted or OOM-killed: {record.before[c.service]} -> {record.after[c.service]}"
                )
            if record.sampled_peak[c.service] >= c.limit:
                problems.append(f"{c.service} used {mib(record.sampled_peak[c.service])} MiB, limit {mib(c.limit)}")
            peak = record.cgroup_peak[c.service]
            if peak is not None and peak >= c.limit:
                problems.append(f"{c.service}: cgroup peak {mib(peak)} MiB reached its limit {mib(c.limit)} MiB")
        assert record.sampler_samples > 0, f"no memory sample was taken: {record.sampler_errors}"
        for backend, count in record.reconnects.items():
            if count:
                problems.append(f"the gateway's connection to {backend} dropped/reconnected ({count} log lines)")
        for service, text in record.new_tracebacks.items():
            problems.append(f"a traceback in {service}'s log:\n{text}")
        if problems:
            logs = {c.service: _log_counts(self.setup, c)["text"][-3000:] for c in self.containers}
            raise AssertionError(f"attack {record.name!r}:\n" + "\n".join(problems) + f"\nlogs: {logs}")

    def table(self) -> str:
        header = ["attack", "replies"] + [f"{c.service} MiB (limit)" for c in self.containers] + ["restarted?"]
        lines = [" | ".join(header), " | ".join("---" for _ in header)]
        for record in self.records:
            lines.append(format_row(record, self.containers))
        notes = []
        if self.records:
            first = self.records[0]
            notes.append(
                f"MiB: largest usage without page cache, sampled every {SAMPLE_INTERVAL_S} s via {first.sampler_source}"
                f" / the kernel's peak incl. page cache "
                + (
                    "during the attack (cgroup v1 max_usage reset before it)"
                    if first.cgroup_peak_is_attack_only
                    else "since the container started"
                )
            )
        for record in self.records:
            notes.append(f"\n{record.name}: error texts")
            notes += [f"  {n} x {code}: {text}" for (code, text), n in sorted(record.messages.items())]
        return "\n".join(lines + notes)


def mib(value: int | None) -> str:
    return "?" if value is None else f"{value / 2**20:.0f}"


def format_row(record: AttackRecord, containers: list[Container]) -> str:
    replies = ", ".join(f"{code} x{n}" for code, n in sorted(record.replies.items()))
    cells = [record.name, replies or "-"]
    restarted = [c.service for c in containers if record.after and record.restarted(c.service)]
    for c in containers:
        # A restarted container has a new cgroup: its kernel peak no longer covers the attack.
        kernel = "killed" if c.service in restarted else mib(record.cgroup_peak.get(c.service))
        cells.append(f"{mib(record.sampled_peak.get(c.service))} / {kernel} ({mib(c.limit)})")
    reconnected = [name for name, n in record.reconnects.items() if n]
    verdict = ", ".join(restarted) if restarted else "no"
    if reconnected:
        verdict += f"; gateway reconnected to {', '.join(reconnected)}"
    cells.append(verdict)
    return " | ".join(cells)


# ---- the wire ----------------------------------------------------------------------------------


def read_replies(ws: ClientConnection, request_ids: list[str], timeout: float = REPLY_TIMEOUT_S) -> dict[str, dict]:
    """One reply per request id; any reply for an unknown id, a second reply, or one more frame within
    QUIET_S after the last fails the test."""
    replies: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while len(replies) < len(request_ids):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no reply for {sorted(set(request_ids) - replies.keys())} within {timeout:.0f} s"
        reply = json.loads(ws.recv(timeout=remaining))
        rid = reply.get("request_id")
        assert rid in request_ids, f"reply for an unknown request id: {str(reply)[:500]}"
        assert rid not in replies, f"second reply for {rid}: {str(reply)[:500]} (first: {str(replies[rid])[:500]})"
        replies[rid] = reply
    with contextlib.suppress(TimeoutError):
        extra = ws.recv(timeout=QUIET_S)
        raise AssertionError(f"a frame after every request was answered: {extra[:500]}")
    return replies


def assert_connection_usable(ws: ClientConnection) -> None:
    pong = rpc(ws, {"type": "health_check", "request_id": "still-there"}, timeout=30)
    assert pong["type"] == "pong" and pong.get("request_id") == "still-there", pong


def rid(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


# ---- the stack (one for the module: a cold start loads three models on 2 cores) ----------------


@pytest.fixture(scope="module")
def bench(docker_env, service_image, tmp_path_factory) -> Iterator[AttackBench]:
    for name in SERVICES:
        service_image(name)
    tmp_path = tmp_path_factory.mktemp("attacks")
    with running_stack(docker_env, tmp_path, sorted(MODEL_SERVICE_PORTS)) as stack:
        stack.wait_healthy(stack.services, ALL_HEALTHY_TIMEOUT_S)
        bench = AttackBench(docker_env, stack)
        bench.wait_all_healthy()
        try:
            yield bench
        finally:
            table = bench.table()
            logger.info("issue 10 attacks, after:\n%s", table)
            print("\n\nissue 10 attacks through the gateway (compose stack, default limits):\n" + table + "\n")


# ---- 1. images -----------------------------------------------------------------------------------

IMAGE_ATTACKS = [
    ("late-SOF JPEG 20000x20000 (SOF after 70 KB of COM)", payloads.late_sof_jpeg, "20000x20000"),
    ("PNG pixel bomb 20000x20000 (valid deflate, 1.7 MB)", payloads.deflate_png_bomb, "20000x20000"),
    ("PNG pixel bomb 30000x30000 (forged IHDR)", payloads.forged_png_bomb, "30000x30000"),
    ("JPEG pixel bomb 16000x16000 (rewritten SOF)", payloads.jpeg_size_bomb, "16000x16000"),
]


@pytest.mark.parametrize(
    ("name", "build", "dimensions"), IMAGE_ATTACKS, ids=["late-sof", "png-deflate", "png-forged", "jpeg"]
)
def test_image_bomb_is_refused_from_its_header(bench, name, build, dimensions):
    raw = build()
    with bench.attack(f"analyze: {name}") as record, ws_client(bench.port) as ws:
        request_id = rid("img")
        reply = rpc(ws, payloads.analyze_image_frame(request_id, raw), timeout=REPLY_TIMEOUT_S)
        record.count(reply)
        assert reply["type"] == "analyze_response" and reply["request_id"] == request_id, str(reply)[:1000]
        errors = reply["data"]["errors"]
        for backend in ("fatigue", "emotion"):
            assert errors.get(backend, {}).get("code") == "bad_request", (backend, errors)
            assert dimensions in errors[backend]["error"], (backend, errors[backend])
        assert not reply["data"]["results"], reply["data"]["results"]
        assert_connection_usable(ws)
    bench.assert_unharmed(record)


def test_image_bombs_pipelined_then_an_honest_image_is_analysed(bench):
    """All four bombs twice, back to back on one connection, then the control: the same late
    frame header layout with the image's true size is analysed normally."""
    frames = {}
    for _, build, _ in IMAGE_ATTACKS * 2:
        request_id = rid("bomb")
        frames[request_id] = payloads.analyze_image_frame(request_id, build())
    with bench.attack("analyze: the 4 image bombs x2, pipelined") as record, ws_client(bench.port) as ws:
        for frame in frames.values():
            ws.send(frame)
        replies = read_replies(ws, list(frames))
        for reply in replies.values():
            record.count(reply)
            assert reply["type"] == "analyze_response", str(reply)[:1000]
            assert {err["code"] for err in reply["data"]["errors"].values()} == {"bad_request"}, reply["data"]
        control = rpc(
            ws, payloads.analyze_image_frame("honest", payloads.honest_late_sof_jpeg()), timeout=REPLY_TIMEOUT_S
        )
        record.count(control)
        assert control["type"] == "analyze_response" and not control["data"]["errors"], str(control)[:1500]
        assert set(control["data"]["results"]) == {"fatigue", "emotion"}, control["data"]
    bench.assert_unharmed(record)


# ---- 2. near-16 MiB frames of JSON numbers -----------------------------------------------------------


def _check_flood_reply(reply: dict[str, Any]) -> str:
    """The code of one flood reply: bad_request (naming the bound) or overloaded."""
    if reply["type"] == "analyze_response":
        errors = reply["data"]["errors"]
        assert set(errors) == {"eeg"} and not reply["data"]["results"], str(reply)[:1000]
        error = errors["eeg"]
    else:
        assert reply["type"] == "error", str(reply)[:1000]
        error = reply
    assert error["code"] in ("bad_request", "overloaded"), str(reply)[:1000]
    if error["code"] == "bad_request":  # refused by its size: at admission (bytes) or by the payload bound
        by_bytes = "would weigh" in error["error"]
        assert by_bytes or (str(payloads.flood_values()) in error["error"] and MAX_VALUES_TEXT in error["error"]), error
    return error["code"]


def _valid_eeg_reply(port: int) -> dict:
    with ws_client(port) as ws:
        data = load_samples("eeg").valid_data()
        return rpc(ws, {"type": "inference_request", "request_id": "after", "model": "eeg", "data": data}, timeout=60)


@pytest.mark.parametrize("msg_type", ["analyze", "inference_request"])
def test_number_floods_pipelined_on_one_connection(bench, msg_type):
    request_ids = [rid(f"flood-{msg_type}") for _ in range(FLOOD_PIPELINE)]
    size = len(payloads.eeg_flood_frame("x", msg_type))
    name = f"{msg_type}: {FLOOD_PIPELINE} x {size / 2**20:.2f} MiB frames ({payloads.flood_values()} numbers), 1 conn"
    with bench.attack(name) as record, ws_client(bench.port) as ws:
        for request_id in request_ids:  # send all, then read all
            ws.send(payloads.eeg_flood_frame(request_id, msg_type))
        replies = read_replies(ws, request_ids)
        codes = Counter(_check_flood_reply(replies[r]) for r in request_ids)
        for r in request_ids:
            record.count(replies[r])
        logger.info("%s: %s", name, dict(codes))
        assert_connection_usable(ws)
    after = _valid_eeg_reply(bench.port)
    record.replies.update([f"then a valid eeg request: {after['type']}"])
    assert after["type"] == "inference_response", after
    bench.assert_unharmed(record)


@pytest.mark.parametrize("connections", [4, 8])
def test_number_floods_on_several_connections_at_once(bench, connections):
    """Several clients at once: the gateway's per-process byte budget, not only its per-connection
    one, is what has to hold here."""
    results: dict[int, dict[str, dict]] = {}
    failures: list[str] = []
    port = bench.port

    def client(index: int) -> None:
        try:
            ids = [rid(f"conn{index}") for _ in range(FLOOD_PER_CONNECTION)]
            with ws_client(port) as ws:
                for request_id in ids:
                    ws.send(payloads.eeg_flood_frame(request_id, "inference_request" if index % 2 else "analyze"))
                results[index] = read_replies(ws, ids)
                assert_connection_usable(ws)
        except BaseException as exc:
            failures.append(f"client {index}: {exc!r}"[:1000])

    payloads.eeg_flood_frame("warm-the-cache")
    name = f"mixed: {connections} conns x {FLOOD_PER_CONNECTION} near-16 MiB number frames at once"
    with bench.attack(name) as record:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(REPLY_TIMEOUT_S + 60)
        for replies in results.values():
            for reply in replies.values():
                record.count(reply)
        if failures:
            record.replies.update(["client saw a failure"] * len(failures))
            record.messages.update(("client", text[:300]) for text in failures)
    # The containers first: a killed gateway explains the clients' failures.
    bench.assert_unharmed(record)
    assert not failures, failures
    assert len(results) == connections
    for replies in results.values():
        for reply in replies.values():
            _check_flood_reply(reply)
    after = _valid_eeg_reply(bench.port)
    record.replies.update([f"then a valid eeg request: {after['type']}"])
    assert after["type"] == "inference_response", after


# ---- 3. the long integer and the lone surrogate ------------------------------------------------------


def _odd_frames(bench: AttackBench) -> list[tuple[str, str, str]]:
    """(label, request_id, frame): each must get one bad_request carrying its request_id."""
    eeg = bench.eeg_sample.valid_data()["eeg"]
    image = bench.fatigue_sample.valid_data()["image"]
    frames = []

    def add(label: str, message: dict, **raw: str) -> None:
        request_id = rid(label)
        frames.append((label, request_id, payloads.with_raw_json({**message, "request_id": request_id}, **raw)))

    long_int = payloads.long_integer(5000)
    eeg_request = {"type": "inference_request", "model": "eeg"}
    add(
        "5000-digit integer as an EEG sample",
        {**eeg_request, "data": {"session_id": "odd", "timestamp": 1.0, "eeg": payloads.eeg_list_data(eeg, "LONG")}},
        LONG=long_int,
    )
    add(
        "5000-digit integer as timestamp (analyze, image + eeg)",
        {"type": "analyze", "data": {"session_id": "odd", "timestamp": "LONG", "image": image, "eeg": eeg}},
        LONG=long_int,
    )
    add(
        "5000-digit integer as 'model'",
        {"type": "inference_request", "model": "LONG", "data": {"session_id": "odd", "eeg": eeg}},
        LONG=long_int,
    )
    add(
        "lone surrogate as session_id (eeg)",
        {**eeg_request, "data": {"session_id": "SURROGATE", "timestamp": 1.0, "eeg": eeg}},
        SURROGATE=payloads.LONE_SURROGATE,
    )
    for model in ("fatigue", "emotion"):
        add(
            f"lone surrogate as session_id ({model})",
            {"type": "inference_request", "model": model, "data": {"session_id": "SURROGATE", "image": image}},
            SURROGATE=payloads.LONE_SURROGATE,
        )
    add(
        "lone surrogate as session_id (analyze, image + eeg)",
        {"type": "analyze", "data": {"session_id": "SURROGATE", "timestamp": 1.0, "image": image, "eeg": eeg}},
        SURROGATE=payloads.LONE_SURROGATE,
    )
    return frames


def _assert_one_bad_request(label: str, reply: dict[str, Any], request_id: str) -> None:
    """An `error` bad_request, or for an `analyze` relayed undecoded: an analyze_response whose every
    backend refused it as bad_request; either way with the sender's request_id."""
    assert reply["request_id"] == request_id, (label, reply)
    if reply["type"] == "analyze_response":
        errors = reply["data"]["errors"]
        assert errors and not reply["data"]["results"], (label, str(reply)[:1500])
        assert {error["code"] for error in errors.values()} == {"bad_request"}, (label, errors)
        return
    assert reply["type"] == "error" and reply["code"] == "bad_request", (label, reply)


def test_long_integer_and_lone_surrogate_get_one_bad_request_each(bench):
    frames = _odd_frames(bench)
    eeg_data = bench.eeg_sample.valid_data()
    with bench.attack("5000-digit integers and lone surrogates, pipelined") as record, ws_client(bench.port) as first:
        for _, _, frame in frames:
            first.send(frame)
        replies = read_replies(first, [request_id for _, request_id, _ in frames])
        for label, request_id, _ in frames:
            record.count(replies[request_id])
            _assert_one_bad_request(label, replies[request_id], request_id)
        # A lone surrogate in the request_id itself: it cannot be echoed, so the error has none.
        first.send(
            payloads.with_raw_json(
                {"type": "analyze", "request_id": "RID", "data": {"eeg": {}}}, RID=payloads.LONE_SURROGATE
            )
        )
        reply = json.loads(first.recv(timeout=30))
        record.count(reply)
        assert reply["type"] == "error" and reply["code"] == "bad_request" and reply["request_id"] is None, reply
        # This client's connection is still open and answered...
        assert_connection_usable(first)
        # ...and another client, on its own connection, gets a normal answer from every backend
        # through the same gateway->backend connections (their drop would show as a reconnect).
        with ws_client(bench.port) as second:
            reply = rpc(
                second,
                {"type": "inference_request", "request_id": "second-client", "model": "eeg", "data": eeg_data},
                timeout=60,
            )
            record.count(reply)
            assert reply["type"] == "inference_response" and reply["request_id"] == "second-client", reply
            image = bench.fatigue_sample.valid_data()["image"]
            reply = rpc(
                second,
                {
                    "type": "analyze",
                    "request_id": "second-analyze",
                    "data": {"session_id": "s2", "timestamp": 3.0, "image": image},
                },
                timeout=60,
            )
            record.count(reply)
            assert reply["type"] == "analyze_response" and not reply["data"]["errors"], str(reply)[:1000]
        # A valid surrogate pair (an emoji) in session_id is not refused.
        pair = rpc(
            first,
            payloads.with_raw_json(
                {
                    "type": "inference_request",
                    "request_id": "pair",
                    "model": "eeg",
                    "data": {**eeg_data, "session_id": "PAIR"},
                },
                PAIR='"\\ud83d\\ude00"',
            ),
            timeout=60,
        )
        record.count(pair)
        assert pair["type"] == "inference_response", pair
    bench.assert_unharmed(record)
