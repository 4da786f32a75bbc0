"""Torch landmark engine benchmark: frames/s on CPU vs MediaPipe, throughput vs batch size.

  .venv/bin/python bench/fatigue_torch.py [--weights DIR] [--threads N] [--seconds S] [--no-compile]

Frames: 640x480 (the astronaut photo, public domain, centred on a grey canvas; one face each).
  (1) batch 1, one call per frame: the refined TorchLandmarkEngine (attention mesh, 478 points,
      the default: compiled ahead of time as the image runs it, and TorchScript; and the legacy
      mesh + iris model path) vs MediaPipe FaceMesh refine_landmarks=True (static mode; goal:
      torch >= 0.7x), the plain torch engine vs
      MediaPipe's plain 468-point FaceMesh, and the service's MediaPipe engine. Each figure also
      gives the process CPU time per frame: MediaPipe's graph runs on threads of its own, so CPU
      time / wall time shows how many cores it really used (torch: --threads).
  (2) refined torch throughput at batch 1, 4, 16, 64 (one detect() call per batch: one forward
      pass per model).
  (3) parity summary on the astronaut photo vs MediaPipe FaceMesh (plain mesh).
Without --weights the models are converted from the installed mediapipe wheel into a temp dir;
without a compiled attention mesh there (shared_vision.aot) one is compiled (~2 min, needs g++)
unless --no-compile.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "services" / "fatigue"), str(REPO / "shared_protocol" / "src")]

import torch  # noqa: E402

from vigil_fatigue.torch_engine.engine import TorchLandmarkEngine  # noqa: E402


def frame_640x480() -> np.ndarray:
    from skimage import data

    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[:400, 56:456]  # 400x400 around the face
    canvas = np.full((480, 640, 3), 110, np.uint8)
    canvas[40:440, 120:520] = photo
    return canvas


def convert_to(directory: Path) -> Path:
    from vigil_fatigue.torch_engine.sources import MODELS, read_model
    from vigil_fatigue.torch_engine.tflite_convert import convert_tflite_bytes, save_converted

    for name in MODELS:
        save_converted(convert_tflite_bytes(read_model(name), name), directory / f"{name}.safetensors")
    return directory


def rate(fn, frames_per_call: int, seconds: float) -> float:
    """Frames/s of `fn` run repeatedly for about `seconds` (after 2 warm-up calls)."""
    return measure(fn, frames_per_call, seconds)[0]


def measure(fn, frames_per_call: int, seconds: float) -> tuple[float, float]:
    """(frames/s, process CPU ms per frame) of `fn` run repeatedly for about `seconds`."""
    fn()
    fn()
    calls, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= 3:
            frames = calls * frames_per_call
            return frames / elapsed, 1000.0 * (time.process_time() - cpu_start) / frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, help="converted .safetensors dir (default: convert now)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds for (1), best kept")
    parser.add_argument("--no-compile", action="store_true", help="do not compile the attention mesh if missing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from shared_vision import aot

    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights or convert_to(Path(tmp))
        model = "face_landmark_with_attention"
        if not args.no_compile and not aot.compiled_paths(weights, model)[0].is_file():
            if args.weights:  # not into the caller's directory: a copy
                weights = Path(shutil.copytree(args.weights, Path(tmp) / "weights"))
            print("compiling the attention mesh ahead of time (~2 min) ...", flush=True)
            aot.compile_graph(weights, model, 192)
        compiled = TorchLandmarkEngine(weights, device="cpu", max_faces=1)
        if compiled.landmark_runtime != "aot-compiled":
            print(f"no compiled attention mesh: {compiled.compiled_unavailable}")
            compiled.close()
            compiled = None
        engine = TorchLandmarkEngine(weights, device="cpu", max_faces=1, compiled=False)
        iris_engine = TorchLandmarkEngine(weights, device="cpu", max_faces=1, refinement="iris")
        plain = TorchLandmarkEngine(weights, device="cpu", max_faces=1, refine_eyes=False)
    frame = frame_640x480()
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    assert len(engine.detect([frame])[0]) == 1, "the benchmark frame must contain one face"

    from mediapipe.python.solutions import face_mesh

    from vigil_fatigue.mediapipe_engine import MediaPipeFaceMeshEngine

    mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False)
    refined_mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True)
    service_engine = MediaPipeFaceMeshEngine(max_faces=1)

    print(
        f"CPU, 640x480 frames, torch {torch.__version__} with {args.threads} thread(s), {args.seconds:.0f} s per figure"
    )
    # Interleaved rounds, best of each: other processes' load hits every figure alike.
    figures = {
        "mp_refined": lambda: refined_mesh.process(rgb),
        **({"compiled": lambda: compiled.detect([frame])} if compiled else {}),
        "torch": lambda: engine.detect([frame]),
        "torch_iris": lambda: iris_engine.detect([frame]),
        "mp_plain": lambda: mesh.process(rgb),
        "torch_plain": lambda: plain.detect([frame]),
        "service": lambda: service_engine.detect([frame]),
    }
    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.rounds):
        for name, fn in figures.items():
            fps, cpu_ms = measure(fn, 1, args.seconds / args.rounds)
            if name not in best or fps > best[name][0]:
                best[name] = (fps, cpu_ms)

    def line(label: str, name: str, versus: str | None = None, note: str = "") -> None:
        fps, cpu_ms = best[name]
        ratio = f"   = {fps / best[versus][0]:.2f}x{note}" if versus else ""
        print(f"    {label:44s}{fps:8.1f}   cpu {cpu_ms:5.2f} ms/frame, cpu/wall {cpu_ms * fps / 1000:.2f}{ratio}")

    print(f"(1) batch 1, frames/s (best of {args.rounds} interleaved rounds)")
    line("MediaPipe FaceMesh refine_landmarks=True", "mp_refined")
    if compiled:
        line(
            "TorchLandmarkEngine refined, compiled (image)",
            "compiled",
            "mp_refined",
            " refined FaceMesh (goal >= 0.7x)",
        )
    line("TorchLandmarkEngine refined, TorchScript", "torch", "mp_refined", " refined FaceMesh")
    line("TorchLandmarkEngine refined (mesh + iris)", "torch_iris", "mp_refined", " refined FaceMesh")
    line("MediaPipe FaceMesh plain (468)", "mp_plain")
    line("TorchLandmarkEngine plain (468)", "torch_plain", "mp_plain", " plain FaceMesh")
    line("service MediaPipe engine (det + refined)", "service")

    print("(2) TorchLandmarkEngine throughput vs batch size (one detect() call per batch)")
    for label, subject in (("compiled", compiled), ("TorchScript", engine)):
        if subject is None:
            continue
        for batch in args.batches:
            frames = [frame] * batch
            fps = rate(lambda frames=frames, subject=subject: subject.detect(frames), batch, args.seconds)
            print(f"    {label:11s} batch {batch:3d}: {fps:8.1f} frames/s  ({1000.0 * batch / fps:7.1f} ms per call)")

    print("(3) parity vs MediaPipe FaceMesh on this frame")
    ref = mesh.process(rgb).multi_face_landmarks[0].landmark
    ref_px = np.array([(p.x * 640, p.y * 480) for p in ref])
    errors = np.linalg.norm(plain.detect([frame])[0][0].points[:, :2] - ref_px, axis=1)
    print(f"    landmark error: mean {errors.mean():.4f} px, max {errors.max():.4f} px")
    mesh.close()
    refined_mesh.close()
    service_engine.close()
    engine.close()
    if compiled:
        compiled.close()
    iris_engine.close()
    plain.close()


if __name__ == "__main__":
    main()
