"""Several gateway processes on one port (`workers` > 1), so the gateway can use every core it is given.

The supervisor (the process `main.py` starts) validates the configuration, then re-runs `main.py`
with the same arguments once per worker, with VIGIL_GATEWAY_WORKER_INDEX set. Each worker is a whole
MainBackend: its own event loop, its own connections to every backend replica, listening on the
same host:port with SO_REUSEPORT (the kernel spreads new connections over the workers by a hash
of the client's address). The supervisor:

- forwards SIGTERM / SIGINT to the workers and waits for their drain (each within its
  `grace_period`, plus CLEANUP_MARGIN; a worker still running then is killed, exit code 1);
- restarts a worker that dies (logged, after RESTART_BACKOFF, doubling with each quick death in a
  row); a worker that has listened STABLE_AFTER seconds starts the count again;
- gives up (stops the others, exits 1) after MAX_QUICK_FAILURES deaths in a row of one worker
  that never became stable (a taken port, a crash at start), and exits 2 at once when a worker
  reports a bad configuration (the supervisor validated it first, so only a file changed since);
- makes the directory of prometheus_client's multiprocess mode (metrics.py) and cleans it.

Per-process limits (connections, pending bytes) are divided among the workers
(`per_worker_config`), so the container's memory bound holds whatever `workers` is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .metrics import MULTIPROC_DIR_ENV

logger = logging.getLogger(__name__)

WORKER_INDEX_ENV = "VIGIL_GATEWAY_WORKER_INDEX"  # set by the supervisor: "run as worker i"
READY_FD_ENV = "VIGIL_GATEWAY_WORKER_READY_FD"  # the worker writes one byte there once it listens
SUPERVISOR_PID_ENV = "VIGIL_GATEWAY_SUPERVISOR_PID"  # the worker stops when its parent is no longer this
_GATEWAY_COPIES = 3  # the gateway charges a request 3 x its frame (gateway.py); for the budget warning

RESTART_BACKOFF = 0.5  # seconds before the first restart of a worker that died
MAX_RESTART_BACKOFF = 10.0
STABLE_AFTER = 10.0  # seconds a worker must have listened before its death no longer counts as quick
MAX_QUICK_FAILURES = 3  # deaths in a row of one worker before the supervisor gives up
CLEANUP_MARGIN = 10.0  # seconds past grace_period a worker may take to close backend connections and exit
POLL_INTERVAL = 0.1
ORPHAN_CHECK_INTERVAL = 1.0  # seconds between a worker's checks that its supervisor still lives


def worker_index() -> int | None:
    """This process's worker index when the supervisor started it, else None."""
    text = os.environ.get(WORKER_INDEX_ENV)
    return int(text) if text is not None and text.isdigit() else None


def per_worker_config(config: Config) -> Config:
    """The configuration one worker runs with: the per-process totals (max_connections,
    max_pending_bytes) divided by `workers`; per-connection limits unchanged."""
    main = config.main_backend
    n = main.workers
    if n == 1:
        return config
    share = main.model_copy(
        update={
            "max_connections": max(1, main.max_connections // n),
            "max_pending_bytes": max(1024, main.max_pending_bytes // n),
        }
    )
    return config.model_copy(update={"main_backend": share})


def budget_warning(config: Config) -> str | None:
    """A worker's byte budget that cannot admit the largest frame is worth a line in the log."""
    main = per_worker_config(config).main_backend
    largest = _GATEWAY_COPIES * config.main_backend.max_message_size
    if config.main_backend.workers > 1 and main.max_pending_bytes < largest:
        return (
            f"each of the {config.main_backend.workers} workers gets max_pending_bytes "
            f"{main.max_pending_bytes} (the total divided among them), less than a request of "
            f"max_message_size costs ({largest}): such requests will be refused as bad_request; "
            "raise max_pending_bytes or lower max_message_size"
        )
    return None


# ---- the worker side -----------------------------------------------------------------------------


class _WorkerTag(logging.Filter):
    """Every log line of a worker says which one: `[worker i]` before the text, `worker` in JSON."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index
        self.prefix = f"[worker {index}] "

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "worker", None) is None:  # once, however many handlers see the record
            record.worker = self.index
            if isinstance(record.msg, str):
                record.msg = self.prefix + record.msg
        return True


def tag_worker_logs(index: int) -> None:
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WorkerTag(index))


async def serve_worker(gateway, ready_fd: int | None) -> None:
    """Run one worker's MainBackend; tell the supervisor once it listens; stop (drain) if the
    supervisor is gone, so that a killed supervisor never leaves workers serving on their own."""
    # The supervisor's pid from it, not getppid() now: it may already be gone (killed while we started).
    supervisor = os.environ.get(SUPERVISOR_PID_ENV, "")
    parent = int(supervisor) if supervisor.isdigit() else os.getppid()
    task = asyncio.create_task(gateway.serve(install_signal_handlers=True))
    while gateway.bound_port is None and not task.done():
        await asyncio.sleep(0.01)
    if gateway.bound_port is not None and ready_fd is not None:
        with contextlib.suppress(OSError):
            os.write(ready_fd, b"1")
            os.close(ready_fd)
        logger.info("listening (pid %d)", os.getpid())
    while not task.done():
        await asyncio.wait({task}, timeout=ORPHAN_CHECK_INTERVAL)
        if not task.done() and os.getppid() != parent:
            logger.warning("the supervisor (pid %d) is gone; draining and exiting", parent)
            gateway.stop()
            await task
    await task


# ---- the supervisor --------------------------------------------------------------------------------


@dataclass
class _Slot:
    """One worker position (index i): the process now in it and its restart history."""

    index: int
    proc: subprocess.Popen | None = None
    ready_fd: int | None = None  # read end of the readiness pipe
    listening_since: float | None = None
    quick_failures: int = 0
    restart_at: float | None = None  # when to start the next process (after a death)


class Supervisor:
    def __init__(self, config: Config, main_py: Path, argv: list[str]) -> None:
        self.config = config
        self.workers = config.main_backend.workers
        self.command = [sys.executable, str(main_py.resolve()), *argv]
        self.cwd = os.getcwd()
        self.slots = [_Slot(i) for i in range(self.workers)]
        self.stopping = False
        self.metrics_dir: Path | None = None
        self._own_metrics_dir = False
        self._exit_code = 0

    # -- lifecycle

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self._make_metrics_dir()
        warning = budget_warning(self.config)
        if warning:
            logger.warning(warning)
        main = self.config.main_backend
        logger.info(
            "main backend supervisor (pid %d): %d workers on %s:%s", os.getpid(), self.workers, main.host, main.port
        )
        try:
            for slot in self.slots:
                self._spawn(slot)
            code = self._watch()
        finally:
            self._stop_all()
            self._remove_metrics_dir()
        return code if code is not None else self._exit_code

    def _on_signal(self, signum: int, _frame) -> None:
        if not self.stopping:
            logger.info("%s: stopping the workers (graceful drain)", signal.Signals(signum).name)
        self.stopping = True

    def _watch(self) -> int | None:
        """Until a stop signal: restart dead workers; None when stopped by a signal, else the exit
        code of giving up."""
        while not self.stopping:
            fds = [slot.ready_fd for slot in self.slots if slot.ready_fd is not None]
            try:
                readable, _, _ = select.select(fds, [], [], POLL_INTERVAL)
            except InterruptedError:  # a signal arrived; PEP 475 retries, but be safe
                readable = []
            now = time.monotonic()
            for slot in self.slots:
                if slot.ready_fd is not None and slot.ready_fd in readable:
                    self._mark_listening(slot, now)
                if slot.proc is not None and slot.proc.poll() is not None:
                    code = self._on_death(slot, now)
                    if code is not None:
                        return code
                if slot.proc is None and slot.restart_at is not None and now >= slot.restart_at and not self.stopping:
                    self._spawn(slot)
                if slot.listening_since is not None and now - slot.listening_since >= STABLE_AFTER:
                    slot.quick_failures = 0
        return None

    def _spawn(self, slot: _Slot) -> None:
        read_fd, write_fd = os.pipe()
        env = {
            **os.environ,
            WORKER_INDEX_ENV: str(slot.index),
            READY_FD_ENV: str(write_fd),
            SUPERVISOR_PID_ENV: str(os.getpid()),
        }
        if self.metrics_dir is not None:
            env[MULTIPROC_DIR_ENV] = str(self.metrics_dir)
        try:
            # Own process group: a terminal's Ctrl-C reaches the supervisor only, which forwards it
            # once; a worker never sees a stop signal before the supervisor knows it is stopping.
            slot.proc = subprocess.Popen(self.command, env=env, cwd=self.cwd, pass_fds=(write_fd,), process_group=0)
        finally:
            os.close(write_fd)
        slot.ready_fd = read_fd
        slot.listening_since = None
        slot.restart_at = None
        logger.info("worker %d started (pid %d)", slot.index, slot.proc.pid)

    def _mark_listening(self, slot: _Slot, now: float) -> None:
        try:
            said = os.read(slot.ready_fd, 1)
        except OSError:
            said = b""
        self._close_ready_fd(slot)
        if said == b"1":  # not the end of the pipe of a worker that died first
            slot.listening_since = now

    def _on_death(self, slot: _Slot, now: float) -> int | None:
        proc = slot.proc
        assert proc is not None
        code = proc.returncode
        self._close_ready_fd(slot)
        self._mark_dead(proc.pid)
        slot.proc = None
        how = _how_it_ended(code)
        stable = slot.listening_since is not None and now - slot.listening_since >= STABLE_AFTER
        if code == 2 and slot.listening_since is None:
            logger.error("worker %d (pid %d) %s: bad configuration; stopping", slot.index, proc.pid, how)
            return 2
        slot.quick_failures = 0 if stable else slot.quick_failures + 1
        if slot.quick_failures >= MAX_QUICK_FAILURES:
            logger.error(
                "worker %d (pid %d) %s, %d times in a row before it ran %gs; giving up (is the port taken?)",
                slot.index,
                proc.pid,
                how,
                slot.quick_failures,
                STABLE_AFTER,
            )
            return 1
        delay = min(MAX_RESTART_BACKOFF, RESTART_BACKOFF * 2 ** max(0, slot.quick_failures - 1))
        slot.restart_at = now + delay
        logger.warning(
            "worker %d (pid %d) %s %s; restarting in %.1fs",
            slot.index,
            proc.pid,
            how,
            "after it listened" if slot.listening_since is not None else "before it listened",
            delay,
        )
        return None

    def _stop_all(self) -> None:
        """SIGTERM every worker, wait for the drains, kill what outlives them."""
        self._exit_code = 0
        live = [slot for slot in self.slots if slot.proc is not None and slot.proc.poll() is None]
        for slot in live:
            with contextlib.suppress(ProcessLookupError):
                slot.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.main_backend.grace_period + CLEANUP_MARGIN
        for slot in live:
            proc = slot.proc
            try:
                code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.error(
                    "worker %d (pid %d) did not stop within its grace period; killing it", slot.index, proc.pid
                )
                proc.kill()
                code = proc.wait()
            # SIGTERM before a worker listens ends it at once: it had nothing in flight.
            if code != 0 and not (code == -signal.SIGTERM and slot.listening_since is None):
                self._exit_code = 1
                logger.warning("worker %d (pid %d) exited with code %s while stopping", slot.index, proc.pid, code)
            self._mark_dead(proc.pid)
        for slot in self.slots:
            self._close_ready_fd(slot)
        logger.info("main backend supervisor stopped")

    @staticmethod
    def _close_ready_fd(slot: _Slot) -> None:
        if slot.ready_fd is not None:
            with contextlib.suppress(OSError):
                os.close(slot.ready_fd)
            slot.ready_fd = None

    # -- metrics files

    def _make_metrics_dir(self) -> None:
        """A fresh directory under the temp dir (/tmp, a tmpfs in the containers), or the operator's
        PROMETHEUS_MULTIPROC_DIR emptied of old files: values of an earlier run must not count."""
        given = os.environ.get(MULTIPROC_DIR_ENV)
        if given:
            self.metrics_dir = Path(given)
            self.metrics_dir.mkdir(parents=True, exist_ok=True)
            for old in self.metrics_dir.glob("*.db"):
                old.unlink()
        else:
            self.metrics_dir = Path(tempfile.mkdtemp(prefix="vigil-gateway-metrics-"))
            self._own_metrics_dir = True
        logger.info("metrics of every worker in %s", self.metrics_dir)

    def _mark_dead(self, pid: int) -> None:
        """A dead worker's live gauges leave the sums; its counters and histograms stay (they are
        history), folded into one archive file so that restarts do not add files without end."""
        if self.metrics_dir is not None:
            from prometheus_client.multiprocess import mark_process_dead

            mark_process_dead(pid, str(self.metrics_dir))
            fold_dead_worker(self.metrics_dir, pid)

    def _remove_metrics_dir(self) -> None:
        if self._own_metrics_dir and self.metrics_dir is not None:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)


def _how_it_ended(code: int) -> str:
    if code >= 0:
        return f"exited with code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def fold_dead_worker(metrics_dir: Path, pid: int) -> None:
    """Add a dead worker's counter and histogram values (prometheus_client's per-process files)
    to `<kind>_archive.db` and remove its files. The archive is rewritten under a name scrapes do
    not read and renamed into place, so a scrape sees it whole."""
    from prometheus_client.mmap_dict import MmapedDict

    for kind in ("counter", "histogram"):
        dead = metrics_dir / f"{kind}_{pid}.db"
        if not dead.exists():
            continue
        archive = metrics_dir / f"{kind}_archive.db"
        totals: dict[str, float] = {}
        for path in (archive, dead):
            if path.exists():
                for key, value, _timestamp, _pos in MmapedDict.read_all_values_from_file(str(path)):
                    totals[key] = totals.get(key, 0.0) + value
        staging = metrics_dir / f"{kind}_archive.tmp"  # not *.db: invisible to MultiProcessCollector
        staging.unlink(missing_ok=True)
        out = MmapedDict(str(staging))
        try:
            for key, value in totals.items():
                out.write_value(key, value, 0.0)
        finally:
            out.close()
        os.replace(staging, archive)
        dead.unlink()
