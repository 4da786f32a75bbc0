"""Thread budget per model service: size torch, BLAS/OpenMP and OpenCV thread pools to the CPU the
container may really use, not to the whole machine.

Why. Every numeric library sizes its pools from the machine's core count, which a container cannot
hide: three model containers on a 2-core host each start 2 torch/OpenMP threads + 2 BLAS threads +
2 OpenCV threads, and idle OpenMP workers spin a while before sleeping (libgomp's default), on the
cores the busy ones need.
Measured on a 2-core box through the compose stack (issue 18), one client sending `analyze` (real
face JPEG + 0.5 s of real 14-channel EEG) back to back, i.e. fatigue + emotion + eeg at once:

    as shipped (pools sized to the machine)            6.2 analyze/s  (161 ms each; slowest model alone 45 ms)
    OMP/MKL/OPENBLAS_NUM_THREADS=1, OMP_WAIT_POLICY=PASSIVE   18.4 analyze/s  (3x)
    each model alone, as shipped -> 1 thread: fatigue 44 -> 53/s, emotion 22 -> 21/s, eeg 125 -> 106/s

so one thread per core the container is allowed costs a model running alone little, and removes the
oversubscription when the models run together.

The rule (one model service per container, one worker thread running the model, see backend.py):
    allowance = min(CPU quota of the cgroup (v2 cpu.max / v1 cfs_quota_us, nested limits included),
                    CPUs in the affinity mask)                   (neither known: os.cpu_count())
    intra_op  = max(1, floor(allowance))   torch intra-op / OpenMP: more threads than the quota only
                                           get throttled by CFS (0.5 CPU -> 1 thread, 1.5 -> 1)
    inter_op  = 1                          one worker thread calls the model; nothing to overlap
    blas      = intra_op                   numpy/scipy BLAS (threadpoolctl), torch's libgomp too
    opencv    = intra_op                   cv2.setNumThreads
An explicit setting (`override`, from --threads / VIGIL_THREADS) replaces intra_op, blas and opencv.
The limits of the compose services are what make the allowances add up to the host's cores.

`apply_thread_budget` must run on the thread that will call the model (OpenMP's thread count is a
per-thread setting) and before the model does parallel work (torch's inter-op pool can be sized only
once per process). Its OMP_NUM_THREADS/... environment defaults (setdefault: an operator's explicit
value stays) reach only libraries loaded after it, and child processes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SOURCE_OVERRIDE = "override"
SOURCE_CGROUP = "cgroup"
SOURCE_AFFINITY = "affinity"
SOURCE_CPU_COUNT = "cpu_count"
SOURCE_GIVEN = "given"  # a plain number passed to thread_budget (its origin unknown)

# Read when these libraries load their OpenMP/BLAS runtimes; see apply_thread_budget.
BLAS_ENV_VARS = ("MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


class CpuAllowance(float):
    """A CPU count (float: quotas are fractional) that remembers where it was read (`source`)."""

    source: str

    def __new__(cls, value: float, source: str) -> CpuAllowance:
        obj = super().__new__(cls, value)
        obj.source = source
        return obj


@dataclass(frozen=True)
class ThreadBudget:
    intra_op: int
    inter_op: int
    blas: int
    opencv: int
    source: str
    allowance: float


# ---- reading the allowance --------------------------------------------------------------------


def cpu_allowance(cgroup_root: str = "/sys/fs/cgroup", proc_self_cgroup: str = "/proc/self/cgroup") -> CpuAllowance:
    """CPUs this process may use: min(cgroup CPU quota, affinity mask); os.cpu_count() if neither is known."""
    quota = cgroup_cpu_quota(cgroup_root, proc_self_cgroup)
    affinity = _affinity_count()
    if quota is not None and (affinity is None or quota <= affinity):
        return CpuAllowance(quota, SOURCE_CGROUP)
    if affinity is not None:
        return CpuAllowance(float(affinity), SOURCE_AFFINITY)
    return CpuAllowance(float(os.cpu_count() or 1), SOURCE_CPU_COUNT)


def cgroup_cpu_quota(cgroup_root: str = "/sys/fs/cgroup", proc_self_cgroup: str = "/proc/self/cgroup") -> float | None:
    """The tightest CPU quota (in CPUs) on this process's cgroup and its ancestors, v1 and v2; None if unset."""
    root = Path(cgroup_root)
    try:
        lines = Path(proc_self_cgroup).read_text().splitlines()
    except OSError:
        lines = []
    quotas: list[float] = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if not path:
            continue
        if hierarchy == "0" and controllers == "":  # v2 unified hierarchy
            for directory in _candidate_dirs([root, root / "unified"], path):
                quotas.extend(q for q in [_v2_quota(directory / "cpu.max")] if q is not None)
        elif "cpu" in controllers.split(","):  # v1 cpu controller, mounted as cpu,cpuacct or cpu
            mounts = [root / controllers, root / ",".join(sorted(controllers.split(","))), root / "cpu"]
            for directory in _candidate_dirs(mounts, path):
                quotas.extend(q for q in [_v1_quota(directory)] if q is not None)
    if not lines:  # no /proc/self/cgroup: the mount root is all we can read
        quotas.extend(q for q in [_v2_quota(root / "cpu.max"), _v1_quota(root / "cpu")] if q is not None)
    return min(quotas) if quotas else None


def _candidate_dirs(mounts: list[Path], cgroup_path: str) -> list[Path]:
    """The cgroup's directory and every ancestor up to each mount root that exists.

    Inside a container the mount root often *is* the container's cgroup while /proc/self/cgroup
    still names the host path (v1, or v2 without a cgroup namespace), so the root is always included.
    """
    parts = [p for p in cgroup_path.strip("/").split("/") if p and p != ".."]
    seen: list[Path] = []
    for mount in mounts:
        for depth in range(len(parts), -1, -1):
            directory = mount.joinpath(*parts[:depth])
            if directory not in seen and directory.is_dir():
                seen.append(directory)
    return seen


def _v2_quota(cpu_max: Path) -> float | None:
    """cpu.max holds "QUOTA PERIOD" in µs, QUOTA "max" when unlimited."""
    try:
        fields = cpu_max.read_text().split()
    except OSError:
        return None
    if not fields or fields[0] == "max":
        return None
    period = fields[1] if len(fields) > 1 else "100000"
    return _ratio(fields[0], period)


def _v1_quota(directory: Path) -> float | None:
    """cpu.cfs_quota_us / cpu.cfs_period_us; quota -1 when unlimited."""
    try:
        quota = (directory / "cpu.cfs_quota_us").read_text().strip()
        period = (directory / "cpu.cfs_period_us").read_text().strip()
    except OSError:
        return None
    return _ratio(quota, period)


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    if q <= 0 or p <= 0:  # -1: no limit
        return None
    return q / p


def _affinity_count() -> int | None:
    try:
        return len(os.sched_getaffinity(0)) or None
    except (AttributeError, OSError):  # not on Linux
        return None


# ---- choosing and applying ------------------------------------------------------------------


def thread_budget(allowance: float, override: int | None = None) -> ThreadBudget:
    """Thread counts for one model service given its CPU allowance (the rule is in the module docstring)."""
    source = getattr(allowance, "source", SOURCE_GIVEN)
    allowance = float(allowance)
    if override is not None:
        if isinstance(override, bool) or not isinstance(override, int) or override < 1:
            raise ValueError(f"thread override must be an integer >= 1, got {override!r}")
        return ThreadBudget(override, 1, override, override, SOURCE_OVERRIDE, allowance)
    if not math.isfinite(allowance) or allowance <= 0:
        raise ValueError(f"CPU allowance must be a positive number, got {allowance!r}")
    threads = max(1, math.floor(allowance))
    return ThreadBudget(threads, 1, threads, threads, source, allowance)


# threadpoolctl's limiter restores the old limits only when asked; the reference is kept so the
# limits visibly belong to the process (and a later apply replaces them).
_blas_limiter: Any = None


def apply_thread_budget(budget: ThreadBudget) -> dict[str, Any]:
    """Set every loaded library's thread pools to `budget`; return what each library now reports.

    Call it on the thread that will run the model, before the model's first parallel work.
    torch is imported here when installed: services that load it lazily (in initialize_model) must
    still get its inter-op pool sized, which is possible only before torch's first parallel work.
    """
    env = _set_env_defaults(budget)
    info: dict[str, Any] = {
        "allowance": round(budget.allowance, 3),
        "source": budget.source,
        "budget": {k: v for k, v in asdict(budget).items() if k not in ("source", "allowance")},
        "env": env,
        "torch": _apply_torch(budget),
        "threadpools": _apply_threadpoolctl(budget),
        "opencv": _apply_opencv(budget),
    }
    logger.debug("thread budget applied: %s", info)  # the caller logs it at start-up
    return info


def _set_env_defaults(budget: ThreadBudget) -> dict[str, str]:
    os.environ.setdefault("OMP_NUM_THREADS", str(budget.intra_op))
    for name in BLAS_ENV_VARS:
        os.environ.setdefault(name, str(budget.blas))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP workers sleep instead of spinning
    return {name: os.environ[name] for name in ("OMP_NUM_THREADS", *BLAS_ENV_VARS, "OMP_WAIT_POLICY")}


def _apply_torch(budget: ThreadBudget) -> dict[str, Any] | None:
    try:
        import torch  # already loaded in a torch service; else loaded now, before its first use
    except ImportError:
        return None  # not installed (the eeg image)
    except Exception as exc:  # a broken install must not keep the service from starting
        logger.warning("torch is installed but does not import: %s: %s", type(exc).__name__, exc)
        return None
    torch.set_num_threads(budget.intra_op)
    report: dict[str, Any] = {}
    # Settable once per process and only before inter-op work started; the same value again raises too.
    if torch.get_num_interop_threads() != budget.inter_op:
        try:
            torch.set_num_interop_threads(budget.inter_op)
        except RuntimeError as exc:
            logger.warning("torch inter-op threads stay at %d: %s", torch.get_num_interop_threads(), exc)
            report["inter_op_error"] = str(exc)
    report["intra_op"] = torch.get_num_threads()
    report["inter_op"] = torch.get_num_interop_threads()
    return report


def _apply_threadpoolctl(budget: ThreadBudget) -> list[dict[str, Any]] | None:
    global _blas_limiter
    try:
        import threadpoolctl
    except ImportError:
        logger.warning("threadpoolctl is not installed: BLAS/OpenMP pools keep their sizes")
        return None
    if _blas_limiter is not None:
        with contextlib.suppress(Exception):
            _blas_limiter.restore_original_limits()
    # threadpoolctl >= 3.8 lets only one thread (the first to set it) resize OpenBLAS's process-wide
    # pool and silently ignores the others; the budget is the process's, so this thread takes over.
    openblas = getattr(threadpoolctl, "OpenBLASController", None)
    if openblas is not None and hasattr(openblas, "clear_controlling_thread"):
        openblas.clear_controlling_thread(force=True)
    # torch's own libgomp shows up as the "openmp" API: it follows intra_op, like torch.set_num_threads.
    _blas_limiter = threadpoolctl.threadpool_limits(limits={"blas": budget.blas, "openmp": budget.intra_op})
    return [
        {"library": pool.get("prefix"), "api": pool.get("user_api"), "num_threads": pool.get("num_threads")}
        for pool in threadpoolctl.threadpool_info()
    ]


def _apply_opencv(budget: ThreadBudget) -> int | None:
    try:
        import cv2
    except ImportError:
        return None
    cv2.setNumThreads(budget.opencv)
    return int(cv2.getNumThreads())
