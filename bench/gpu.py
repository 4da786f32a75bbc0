"""The torch models on CUDA beside the CPU: parity and throughput. Run it on a GPU host.

  python bench/gpu.py --face-mesh DIR --emotion-model DIR [--seconds 2] [--batches 1 4 16 64]

--face-mesh: the fatigue image's converted models (shared_vision.convert: the four .safetensors
files); --emotion-model: the emotion image's mini-Xception folder (vigil_emotion.mini_xception
.conversion). Both are what the images' builder stages write, so this runs the services' own
loading code on the weights they ship.

For each model, on the same 640x480 frame (the astronaut photo, public domain, one face):
- parity: the CUDA result against the CPU result of the same code (landmark and box distance in
  pixels, probability difference). cuDNN may run float32 convolutions in TF32 on Ampere and newer,
  so CUDA and CPU agree to a tolerance, not bit for bit;
- frames (crops) per second and ms per call at each batch size, one `detect`/`predict` call per
  batch, pre- and post-processing on the CPU included, as the services call them.

Exit status 1 when a parity check fails, 2 when torch sees no CUDA device.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [
    str(REPO / "services" / "fatigue"),
    str(REPO / "services" / "emotion"),
    str(REPO / "shared_vision" / "src"),
    str(REPO / "shared_protocol" / "src"),
]

import torch  # noqa: E402

# The same frame and timing loop as the CPU benchmark of the landmark engine.
from fatigue_torch import frame_640x480, measure  # noqa: E402

LANDMARK_TOLERANCE_PX = 1.0  # the largest landmark distance CUDA vs CPU taken as agreement
BOX_TOLERANCE_PX = 1.0
PROBABILITY_TOLERANCE = 1e-3


def print_rates(args, run_cpu, run_device, item, batches, unit: str, cpu_note: str = "") -> None:
    """Items/s and ms per call: the CPU at batch 1, then the device at each batch size (one call
    per batch, as the services batch)."""
    per_s = measure(lambda: run_cpu([item]), 1, args.seconds)[0]
    print(f"{'cpu':<4} batch {1:>3}: {per_s:9.1f} {unit}/s  {1000 / per_s:8.2f} ms/call{cpu_note}")
    for batch in batches:
        items = [item] * batch
        # Every call returns numpy results: the device's work is done when it returns.
        per_s = measure(lambda items=items: run_device(items), batch, args.seconds)[0]
        print(f"{args.device:<4} batch {batch:>3}: {per_s:9.1f} {unit}/s  {1000 * batch / per_s:8.2f} ms/call")


def check(name: str, value: float, tolerance: float, failures: list[str]) -> str:
    ok = value <= tolerance
    if not ok:
        failures.append(f"{name}: {value:.3g} > {tolerance:g}")
    return f"{value:.4g} ({'ok' if ok else 'FAIL'}, tolerance {tolerance:g})"


def landmarks(args, frame: np.ndarray, failures: list[str]) -> None:
    from vigil_fatigue.torch_engine.engine import TorchLandmarkEngine

    warm = tuple(sorted(set(args.batches)))
    cpu = TorchLandmarkEngine(args.face_mesh, device="cpu", max_faces=1, compiled=False)
    gpu = TorchLandmarkEngine(args.face_mesh, device=args.device, max_faces=1, warmup_batch_sizes=warm)
    on_cpu, on_gpu = cpu.detect([frame])[0], gpu.detect([frame])[0]
    print(f"\n== fatigue: TorchLandmarkEngine (attention mesh, {gpu.landmark_runtime}) ==")
    print(f"faces found: cpu {len(on_cpu)}, {args.device} {len(on_gpu)}")
    if len(on_cpu) != 1 or len(on_gpu) != 1:
        failures.append("landmarks: the frame's one face not found on both devices")
        return
    gap = np.linalg.norm(on_cpu[0].points[:, :2] - on_gpu[0].points[:, :2], axis=1)
    worst = check("landmarks", gap.max(), LANDMARK_TOLERANCE_PX, failures)
    print(f"{len(gap)} landmarks, {args.device} vs cpu: mean {gap.mean():.4f} px, max {worst} px")
    threads = f"  (torch threads {torch.get_num_threads()})"
    print_rates(args, cpu.detect, gpu.detect, frame, args.batches, "frames", threads)
    cpu.close()
    gpu.close()


def detector(args, frame: np.ndarray, failures: list[str]) -> None:
    from shared_vision.blazeface import BlazeFaceDetector

    weights = Path(args.face_mesh) / "face_detection_short_range.safetensors"
    cpu = BlazeFaceDetector(weights, device="cpu", max_faces=4)
    gpu = BlazeFaceDetector(weights, device=args.device, max_faces=4, warmup_batch_sizes=tuple(args.batches))
    on_cpu, on_gpu = cpu.detect([frame])[0], gpu.detect([frame])[0]
    print("\n== emotion's face detector: BlazeFaceDetector (short range) ==")
    print(f"faces found: cpu {len(on_cpu)}, {args.device} {len(on_gpu)}")
    if len(on_cpu) != 1 or len(on_gpu) != 1:
        failures.append("detector: the frame's one face not found on both devices")
        return
    gap = float(np.abs(on_cpu[0].box - on_gpu[0].box).max())
    print(f"box corners, {args.device} vs cpu: max {check('detector box', gap, BOX_TOLERANCE_PX, failures)} px; "
          f"score {on_cpu[0].score:.4f} vs {on_gpu[0].score:.4f}")  # fmt: skip
    print_rates(args, cpu.detect, gpu.detect, frame, args.batches, "frames")


def classifier(args, frame: np.ndarray, failures: list[str]) -> None:
    from vigil_emotion.classifier import ExpressionClassifier

    crop = np.ascontiguousarray(frame[90:220, 280:410, ::-1])  # the face, RGB
    cpu = ExpressionClassifier(args.emotion_model, device="cpu")
    gpu = ExpressionClassifier(args.emotion_model, device=args.device)
    p_cpu, p_gpu = cpu.predict([crop])[0], gpu.predict([crop])[0]
    print(f"\n== emotion: ExpressionClassifier ({cpu.model_type}, {len(cpu.labels)} labels) ==")
    print(f"top label: cpu {cpu.labels[int(p_cpu.argmax())]}, {args.device} {gpu.labels[int(p_gpu.argmax())]}")
    if p_cpu.argmax() != p_gpu.argmax():
        failures.append(f"classifier: top label differs between {args.device} and cpu")
    gap = float(np.abs(p_cpu - p_gpu).max())
    worst = check("probabilities", gap, PROBABILITY_TOLERANCE, failures)
    print(f"probabilities, {args.device} vs cpu: max |difference| {worst}")
    print_rates(args, cpu.predict, gpu.predict, crop, sorted(set(args.batches) | {256}), "crops")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--face-mesh", type=Path, required=True, help="folder of the converted face models")
    parser.add_argument("--emotion-model", type=Path, required=True, help="the mini-Xception model folder")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per figure (default 2)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--device", default="cuda", help="the device compared with the CPU (default cuda)")
    parser.add_argument("--cpu-threads", type=int, default=1, help="torch threads on the CPU side (default 1)")
    args = parser.parse_args()
    on_cuda = args.device.startswith("cuda")
    if on_cuda and not torch.cuda.is_available():
        print("torch sees no CUDA device: nothing to measure here")
        return 2
    torch.set_num_threads(args.cpu_threads)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores, compared: cpu and {args.device}")
    if on_cuda:
        props = torch.cuda.get_device_properties(torch.device(args.device))
        print(
            f"{props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}, "
            f"cuDNN {torch.backends.cudnn.version()}, cuDNN TF32 {'on' if torch.backends.cudnn.allow_tf32 else 'off'}"
        )
    frame = frame_640x480()
    failures: list[str] = []
    landmarks(args, frame, failures)
    detector(args, frame, failures)
    classifier(args, frame, failures)
    if on_cuda:
        print(f"\npeak CUDA memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    print("parity: " + ("all within tolerance" if not failures else "FAILED: " + "; ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
