"""Thread budgets: the CPU allowance read from fake cgroup v1/v2 trees and the affinity mask, the
rule that turns it into thread counts, and that applying a budget really resizes torch, the
threadpoolctl-visible BLAS/OpenMP pools and OpenCV (in subprocesses, so this process keeps its own).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shared_protocol import threads
from shared_protocol.threads import CpuAllowance, ThreadBudget, cpu_allowance, thread_budget

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def affinity(monkeypatch):
    """Set the affinity mask cpu_allowance sees: affinity(n) -> n CPUs; affinity(None) -> no sched_getaffinity."""

    def set_cpus(n: int | None) -> None:
        if n is None:
            monkeypatch.delattr(threads.os, "sched_getaffinity", raising=False)
        else:
            monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(n)))

    return set_cpus


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v2_tree(tmp_path: Path, cgroup_path: str, limits: dict[str, str]) -> tuple[str, str]:
    """A cgroup2 mount in tmp_path: limits maps a cgroup dir ("" = mount root) to its cpu.max text."""
    root = tmp_path / "cgroup"
    root.mkdir()
    for directory, cpu_max in limits.items():
        write(root / directory / "cpu.max", cpu_max + "\n")
    (root / cgroup_path.strip("/")).mkdir(parents=True, exist_ok=True)
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text(f"0::{cgroup_path}\n")
    return str(root), str(proc)


def v1_tree(
    tmp_path: Path, cgroup_path: str, limits: dict[str, tuple[str, str]], controllers: str = "cpu,cpuacct"
) -> tuple[str, str]:
    """A cgroup v1 `cpu` hierarchy: limits maps a dir under the controller mount to (quota_us, period_us)."""
    root = tmp_path / "cgroup"
    mount = root / controllers
    mount.mkdir(parents=True)
    for directory, (quota, period) in limits.items():
        write(mount / directory / "cpu.cfs_quota_us", quota + "\n")
        write(mount / directory / "cpu.cfs_period_us", period + "\n")
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text(f"12:pids:{cgroup_path}\n4:{controllers}:{cgroup_path}\n1:name=systemd:{cgroup_path}\n")
    return str(root), str(proc)


# ---- cgroup v2 ------------------------------------------------------------------------------------


def test_v2_quota_in_a_container(tmp_path, affinity):
    affinity(8)
    root, proc = v2_tree(tmp_path, "/", {"": "150000 100000"})
    allowance = cpu_allowance(root, proc)
    assert allowance == 1.5 and allowance.source == "cgroup"


def test_v2_unset_quota_falls_back_to_affinity(tmp_path, affinity):
    affinity(4)
    root, proc = v2_tree(tmp_path, "/", {"": "max 100000"})
    allowance = cpu_allowance(root, proc)
    assert allowance == 4.0 and allowance.source == "affinity"


def test_v2_nested_path_takes_the_tightest_ancestor(tmp_path, affinity):
    affinity(16)
    root, proc = v2_tree(
        tmp_path,
        "/kubepods.slice/pod1/ctr",
        {"kubepods.slice": "max 100000", "kubepods.slice/pod1": "300000 100000", "kubepods.slice/pod1/ctr": "max"},
    )
    assert cpu_allowance(root, proc) == 3.0


def test_v2_other_period(tmp_path, affinity):
    affinity(8)
    root, proc = v2_tree(tmp_path, "/app", {"app": "25000 50000"})
    assert cpu_allowance(root, proc) == 0.5


# ---- cgroup v1 ------------------------------------------------------------------------------------


def test_v1_quota_on_the_named_path(tmp_path, affinity):
    affinity(8)
    root, proc = v1_tree(tmp_path, "/docker/abc123", {"": ("-1", "100000"), "docker/abc123": ("200000", "100000")})
    allowance = cpu_allowance(root, proc)
    assert allowance == 2.0 and allowance.source == "cgroup"


def test_v1_unset_quota_falls_back_to_affinity(tmp_path, affinity):
    affinity(3)
    root, proc = v1_tree(tmp_path, "/docker/abc123", {"": ("-1", "100000"), "docker/abc123": ("-1", "100000")})
    allowance = cpu_allowance(root, proc)
    assert allowance == 3.0 and allowance.source == "affinity"


def test_v1_container_view_mount_root_is_the_containers_cgroup(tmp_path, affinity):
    # Docker on v1: /proc/self/cgroup names the host path, but the mount root is the container's cgroup.
    affinity(8)
    root, proc = v1_tree(tmp_path, "/docker/abc123", {"": ("50000", "100000")})
    assert cpu_allowance(root, proc) == 0.5


def test_v1_nested_parent_tighter_than_child(tmp_path, affinity):
    affinity(8)
    root, proc = v1_tree(
        tmp_path,
        "/kubepods/burstable/pod9/ctr",
        {"kubepods/burstable/pod9": ("100000", "100000"), "kubepods/burstable/pod9/ctr": ("400000", "100000")},
    )
    assert cpu_allowance(root, proc) == 1.0


def test_v1_cpu_only_mount_name(tmp_path, affinity):
    affinity(8)
    root, proc = v1_tree(tmp_path, "/", {"": ("300000", "100000")}, controllers="cpu")
    assert cpu_allowance(root, proc) == 3.0


def test_hybrid_v1_and_v2_tightest_wins(tmp_path, affinity):
    affinity(8)
    root = tmp_path / "cgroup"
    write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", "300000\n")
    write(root / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    write(root / "unified" / "cpu.max", "150000 100000\n")
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text("4:cpu,cpuacct:/\n0::/\n")
    assert cpu_allowance(str(root), str(proc)) == 1.5


def test_garbage_in_cgroup_files_is_ignored(tmp_path, affinity):
    affinity(2)
    root, proc = v2_tree(tmp_path, "/", {"": "lots 100000"})
    assert cpu_allowance(root, proc) == 2.0


# ---- affinity and fallbacks ------------------------------------------------------------------------


def test_affinity_smaller_than_quota_wins(tmp_path, affinity):
    affinity(1)
    root, proc = v2_tree(tmp_path, "/", {"": "400000 100000"})
    allowance = cpu_allowance(root, proc)
    assert allowance == 1.0 and allowance.source == "affinity"


def test_no_cgroup_no_affinity_uses_cpu_count(tmp_path, affinity, monkeypatch):
    affinity(None)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 6)
    allowance = cpu_allowance(str(tmp_path / "missing"), str(tmp_path / "missing_proc"))
    assert allowance == 6.0 and allowance.source == "cpu_count"


def test_this_machine_allowance_is_positive_and_bounded():
    allowance = cpu_allowance()
    assert 0 < allowance <= (os.cpu_count() or 1)
    assert allowance.source in ("cgroup", "affinity", "cpu_count")


# ---- the rule -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allowance", "expected"), [(0.5, 1), (0.01, 1), (1.0, 1), (1.5, 1), (2.0, 2), (2.7, 2), (16.0, 16)]
)
def test_budget_floors_the_allowance_and_keeps_one_inter_op_thread(allowance, expected):
    budget = thread_budget(CpuAllowance(allowance, "cgroup"))
    assert budget == ThreadBudget(expected, 1, expected, expected, "cgroup", allowance)


def test_override_wins_over_the_allowance():
    budget = thread_budget(CpuAllowance(8.0, "cgroup"), override=3)
    assert budget == ThreadBudget(3, 1, 3, 3, "override", 8.0)
    assert thread_budget(0.5, override=4).intra_op == 4  # even above the allowance: the operator decides


def test_plain_number_allowance_has_source_given():
    assert thread_budget(2.0).source == "given"


@pytest.mark.parametrize("override", [0, -1, 1.5, True, "2"])
def test_bad_override_is_refused(override):
    with pytest.raises(ValueError, match="override"):
        thread_budget(2.0, override=override)


@pytest.mark.parametrize("allowance", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_allowance_is_refused(allowance):
    with pytest.raises(ValueError, match="allowance"):
        thread_budget(allowance)


# ---- applying it (subprocesses: thread pools are per process) ---------------------------------------


def run_python(code: str, timeout: float = 120) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.endswith("_NUM_THREADS") or k in ("OMP_WAIT_POLICY", "VECLIB_MAXIMUM_THREADS", "VIGIL_THREADS"))
    }
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "shared_protocol" / "src"), str(REPO / "tests")])
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


LIBRARY_COUNTS = """
    def library_counts():
        import cv2, threadpoolctl, torch
        return {
            "torch": [torch.get_num_threads(), torch.get_num_interop_threads()],
            "pools": sorted({p["num_threads"] for p in threadpoolctl.threadpool_info()}),
            "api": sorted({p["user_api"] for p in threadpoolctl.threadpool_info()}),
            "opencv": cv2.getNumThreads(),
        }
"""


def test_apply_resizes_torch_blas_openmp_and_opencv():
    out = run_python(
        LIBRARY_COUNTS
        + """
    import json, os
    import cv2, numpy, threadpoolctl, torch
    from shared_protocol.threads import apply_thread_budget, thread_budget
    torch.set_num_threads(3); cv2.setNumThreads(3); threadpoolctl.threadpool_limits(3)
    before = library_counts()
    info = apply_thread_budget(thread_budget(4.0, override=1))
    after = library_counts()
    print(json.dumps({"before": before, "after": after, "info": info, "omp_env": os.environ.get("OMP_NUM_THREADS")}))
    """
    )
    assert out["before"]["torch"][0] == 3 and out["before"]["pools"] == [3] and out["before"]["opencv"] == 3
    assert out["after"] == {"torch": [1, 1], "pools": [1], "api": out["before"]["api"], "opencv": 1}
    assert {"blas", "openmp"} <= set(out["after"]["api"])  # numpy's OpenBLAS and torch's libgomp both seen
    info = out["info"]
    assert info["source"] == "override" and info["budget"] == {"intra_op": 1, "inter_op": 1, "blas": 1, "opencv": 1}
    assert info["torch"] == {"intra_op": 1, "inter_op": 1}
    assert info["threadpools"] and all(pool["num_threads"] == 1 for pool in info["threadpools"])
    assert info["opencv"] == 1
    assert out["omp_env"] == "1" and info["env"]["OMP_WAIT_POLICY"] == "PASSIVE"


def test_apply_twice_after_parallel_work_does_not_raise_and_reports_the_truth():
    out = run_python(
        LIBRARY_COUNTS
        + """
    import json
    import torch
    from shared_protocol.threads import ThreadBudget, apply_thread_budget, thread_budget
    first = apply_thread_budget(thread_budget(2.0))
    torch.ones(256, 256) @ torch.ones(256, 256)
    second = apply_thread_budget(thread_budget(3.0, override=3))  # inter_op 1 again: nothing to set
    third = apply_thread_budget(ThreadBudget(1, 2, 1, 1, "given", 1.0))  # new inter-op count after work started
    print(json.dumps({"first": first["torch"], "second": second["torch"], "third": third["torch"],
                      "now": library_counts()}))
    """
    )
    assert out["first"] == {"intra_op": 2, "inter_op": 1}
    assert out["second"] == {"intra_op": 3, "inter_op": 1}
    assert out["third"]["intra_op"] == 1 and out["third"]["inter_op"] == 1 and "inter_op_error" in out["third"]
    assert out["now"]["torch"] == [1, 1] and out["now"]["pools"] == [1]


def test_apply_on_a_worker_thread_wins_over_limits_the_main_thread_set():
    # threadpoolctl lets only the first thread that set OpenBLAS's pool resize it; the backend
    # applies the budget on its worker thread, so that thread must take over.
    out = run_python(
        LIBRARY_COUNTS
        + """
    import json, threading
    import cv2, threadpoolctl, torch
    from shared_protocol.threads import apply_thread_budget, thread_budget
    threadpoolctl.threadpool_limits(3)
    seen = {}
    def worker():
        apply_thread_budget(thread_budget(1.0))
        seen.update(library_counts())
    thread = threading.Thread(target=worker)
    thread.start(); thread.join()
    print(json.dumps(seen))
    """
    )
    assert out["torch"] == [1, 1] and out["pools"] == [1] and out["opencv"] == 1


def test_apply_loads_and_sizes_torch_when_installed_and_keeps_an_operators_env():
    # A service that imports torch only in initialize_model still gets torch's pools sized.
    out = run_python(
        """
    import json, os, sys
    os.environ["OPENBLAS_NUM_THREADS"] = "7"
    from shared_protocol.threads import apply_thread_budget, thread_budget
    assert "torch" not in sys.modules
    info = apply_thread_budget(thread_budget(1.0))
    import torch
    print(json.dumps({"info": info, "torch": [torch.get_num_threads(), torch.get_num_interop_threads()]}))
    """
    )
    assert out["info"]["torch"] == {"intra_op": 1, "inter_op": 1} and out["torch"] == [1, 1]
    assert out["info"]["env"]["OPENBLAS_NUM_THREADS"] == "7"  # setdefault: the operator's value stays
    assert out["info"]["env"]["OMP_NUM_THREADS"] == "1"


def test_apply_without_torch_or_opencv_installed():
    out = run_python(
        """
    import json, sys
    sys.modules["torch"] = None  # import torch -> ImportError, as in the eeg image
    sys.modules["cv2"] = None
    from shared_protocol.threads import apply_thread_budget, thread_budget
    info = apply_thread_budget(thread_budget(2.0))
    print(json.dumps(info))
    """
    )
    assert out["torch"] is None and out["opencv"] is None
    assert out["budget"]["intra_op"] == 2 and out["env"]["OMP_NUM_THREADS"] == "2"


# ---- the service applies it (BaseModelBackend wiring: `threads=` keyword, pong model.threads) --------

SERVICE_SCRIPT = """
import asyncio, json, sys
from dataclasses import asdict
import cv2, threadpoolctl, torch  # loaded at import, as a real model service's code does
from shared_protocol.threads import cpu_allowance, thread_budget
from support.controlled_backend import ControlledBackend
from support.net import connect_ws, rpc, serving, wait_ready

override = json.loads(sys.argv[1])
expected = thread_budget(cpu_allowance(), override=override)
start = max(expected.intra_op, expected.blas, expected.opencv) + 1  # every pool starts off the budget
torch.set_num_threads(start); cv2.setNumThreads(start); threadpoolctl.threadpool_limits(start)


class ThreadProbe(ControlledBackend):
    def process_inference(self, data):  # what the model's own thread sees
        return {"torch": [torch.get_num_threads(), torch.get_num_interop_threads()],
                "pools": sorted({p["num_threads"] for p in threadpoolctl.threadpool_info()}),
                "opencv": cv2.getNumThreads()}


async def main():
    backend = ThreadProbe(**({} if override is None else {"threads": override}))
    async with serving(backend) as url:
        await wait_ready(backend)
        async with await connect_ws(url) as ws:
            pong = await rpc(ws, {"type": "health_check"})
            seen = await rpc(ws, {"type": "inference_request", "request_id": "t", "data": {}})
    print(json.dumps({"pong": pong, "seen": seen["data"], "expected": asdict(expected)}))


asyncio.run(main())
"""


def run_service(override: int | None) -> dict:
    return run_python(SERVICE_SCRIPT.replace("sys.argv[1]", repr(json.dumps(override))))


def test_service_with_threads_1_reports_and_runs_with_one_thread_everywhere():
    out = run_service(1)
    threads_info = out["pong"]["model"]["threads"]
    assert threads_info["source"] == "override"
    assert threads_info["torch"]["intra_op"] == 1 and threads_info["torch"]["inter_op"] == 1
    assert threads_info["threadpools"] and all(pool["num_threads"] == 1 for pool in threads_info["threadpools"])
    assert threads_info["opencv"] == 1
    assert out["seen"] == {"torch": [1, 1], "pools": [1], "opencv": 1}


def test_service_without_override_uses_the_derived_budget():
    out = run_service(None)
    expected = out["expected"]
    threads_info = out["pong"]["model"]["threads"]
    assert threads_info["source"] == expected["source"] != "override"
    assert threads_info["allowance"] == pytest.approx(expected["allowance"], abs=1e-3)
    assert threads_info["torch"] == {"intra_op": expected["intra_op"], "inter_op": expected["inter_op"]}
    assert {pool["num_threads"] for pool in threads_info["threadpools"]} == {expected["blas"]}
    assert threads_info["opencv"] == expected["opencv"]
    assert out["seen"] == {
        "torch": [expected["intra_op"], expected["inter_op"]],
        "pools": [expected["blas"]],
        "opencv": expected["opencv"],
    }
