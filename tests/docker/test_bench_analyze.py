"""bench/analyze.py keeps working: run it for ~2 s per table cell against the compose stack.

Only that it printed the table (and exited 0, i.e. every reply was a success) is asserted, never
a timing: the numbers depend on the host.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys

import pytest
from dockerlib import MAIN_SERVICE, MODEL_SERVICE_PORTS, REPO
from test_docker_stack import ALL_HEALTHY_TIMEOUT_S, running_stack, wait_gateway

pytestmark = [pytest.mark.docker, pytest.mark.timeout(60 * 60)]
logger = logging.getLogger(__name__)

BENCH = REPO / "bench" / "analyze.py"
SECONDS_PER_CELL = 2
BENCH_TIMEOUT_S = 600  # 8 cells of 2 s, plus warm-up requests and connection set-up on a busy host


def test_bench_analyze_prints_the_table_against_the_compose_stack(docker_env, service_image, tmp_path) -> None:
    present = sorted(MODEL_SERVICE_PORTS)
    for name in [MAIN_SERVICE, *present]:
        service_image(name)

    with running_stack(docker_env, tmp_path, present) as stack:
        stack.wait_healthy(stack.services, ALL_HEALTHY_TIMEOUT_S)
        port = stack.main_port()
        wait_gateway(
            port, lambda p: all(p["backends"][n]["status"] == "healthy" for n in present), 60, "every backend ready"
        )
        proc = subprocess.run(
            [
                sys.executable,
                str(BENCH),
                "--url",
                f"ws://127.0.0.1:{port}",
                "--seconds",
                str(SECONDS_PER_CELL),
                "--clients",
                "1,4",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=BENCH_TIMEOUT_S,
        )
    logger.info("bench/analyze.py printed:\n%s", proc.stdout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}"
    out = proc.stdout
    assert "| clients | analyze/s | fatigue only | emotion only | eeg only |" in out, out
    number = r"\d+\.\d"
    for clients in (1, 4):
        assert re.search(rf"^\| {clients} \| {number} \| {number} \| {number} \| {number} \|$", out, re.M), out
    assert re.search(r"^1 client: analyze/s ÷ \(1 / slowest model's per-request time\) = \d+\.\d\d", out, re.M), out
