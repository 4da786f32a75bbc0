"""Torch landmark engine benchmark: frames/s on CPU vs MediaPipe, throughput vs batch size.

  .venv/bin/python bench/fatigue_torch.py [--weights DIR] [--threads N] [--seconds S]

Frames: 640x480 (the astronaut photo, public domain, centred on a grey canvas; one face each).
  (1) batch 1, one call per frame: the refined TorchLandmarkEngine (mesh + iris model, 478 points)
      vs MediaPipe FaceMesh refine_landmarks=True (static mode; goal: torch >= 0.7x), the plain
      torch engine vs MediaPipe's plain 468-point FaceMesh, and the service's MediaPipe engine
      (detector + attention mesh).
  (2) refined torch throughput at batch 1, 4, 16, 64 (one detect() call per batch: one forward
      pass per model).
  (3) parity summary on the astronaut photo vs MediaPipe FaceMesh (plain mesh).
Without --weights the models are converted from the installed mediapipe wheel into a temp dir.
"""

from __future__ import annotations

import argparse
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
    fn()
    fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= 3:
            return calls * frames_per_call / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, help="converted .safetensors dir (default: convert now)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 64])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights or convert_to(Path(tmp))
        engine = TorchLandmarkEngine(weights, device="cpu", max_faces=1)
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
    mp_refined_fps = rate(lambda: refined_mesh.process(rgb), 1, args.seconds)
    torch_fps = rate(lambda: engine.detect([frame]), 1, args.seconds)
    mp_fps = rate(lambda: mesh.process(rgb), 1, args.seconds)
    plain_fps = rate(lambda: plain.detect([frame]), 1, args.seconds)
    service_fps = rate(lambda: service_engine.detect([frame]), 1, args.seconds)
    print("(1) batch 1, frames/s")
    print(f"    MediaPipe FaceMesh refine_landmarks=True    {mp_refined_fps:8.1f}")
    print(
        f"    TorchLandmarkEngine refined (mesh + iris)   {torch_fps:8.1f}"
        f"   = {torch_fps / mp_refined_fps:.2f}x refined FaceMesh (goal >= 0.7x)"
    )
    print(f"    MediaPipe FaceMesh plain (468)              {mp_fps:8.1f}")
    print(
        f"    TorchLandmarkEngine plain (468)             {plain_fps:8.1f}   = {plain_fps / mp_fps:.2f}x plain FaceMesh"
    )
    print(f"    service MediaPipe engine (det + refined)    {service_fps:8.1f}")

    print("(2) TorchLandmarkEngine throughput vs batch size (one detect() call per batch)")
    for batch in args.batches:
        frames = [frame] * batch
        fps = rate(lambda frames=frames: engine.detect(frames), batch, args.seconds)
        print(f"    batch {batch:3d}: {fps:8.1f} frames/s  ({1000.0 * batch / fps:7.1f} ms per call)")

    print("(3) parity vs MediaPipe FaceMesh on this frame")
    ref = mesh.process(rgb).multi_face_landmarks[0].landmark
    ref_px = np.array([(p.x * 640, p.y * 480) for p in ref])
    errors = np.linalg.norm(plain.detect([frame])[0][0].points[:, :2] - ref_px, axis=1)
    print(f"    landmark error: mean {errors.mean():.4f} px, max {errors.max():.4f} px")
    mesh.close()
    refined_mesh.close()
    service_engine.close()
    engine.close()
    plain.close()


if __name__ == "__main__":
    main()
