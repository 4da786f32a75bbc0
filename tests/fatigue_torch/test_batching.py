"""N frames in one detect() call == N single calls, with one forward pass per model."""

from __future__ import annotations

import numpy as np
import pytest
from fatigue import images

# Batched convolutions may sum in another order than batch-1 ones: float32 noise only.
BATCH_TOLERANCE_PX = 1e-2


def _frames(astronaut, astronaut_closed):
    noise = np.random.default_rng(3).integers(0, 256, (240, 320, 3), dtype=np.uint8)  # no face
    return [
        astronaut,
        images.rotated(astronaut, 20),
        noise,
        images.scaled(astronaut_closed, 0.6),
        images.scaled(astronaut, 1.3),
        images.two_faces(astronaut),
    ]


def test_batch_equals_single_calls(torch_engine, astronaut, astronaut_closed):
    frames = _frames(astronaut, astronaut_closed)
    batched = torch_engine.detect(frames)
    singles = [torch_engine.detect([frame])[0] for frame in frames]
    assert [len(faces) for faces in batched] == [1, 1, 0, 1, 1, 2]
    for faces_batched, faces_single in zip(batched, singles, strict=True):
        assert len(faces_batched) == len(faces_single)
        for a, b in zip(faces_batched, faces_single, strict=True):
            assert np.abs(a.points - b.points).max() < BATCH_TOLERANCE_PX
            assert np.allclose(a.box, b.box, atol=BATCH_TOLERANCE_PX)
            assert abs(a.score - b.score) < 1e-4


@pytest.mark.parametrize(("engine_name", "expected"), [("torch_engine", [6, 6]), ("iris_engine", [6, 6, 12])])
def test_one_forward_per_model_per_call(engine_name, expected, request, astronaut, astronaut_closed, monkeypatch):
    engine = request.getfixturevalue(engine_name)
    frames = _frames(astronaut, astronaut_closed)
    batch_sizes = []
    run = engine._run

    def counting_run(model, batch):
        batch_sizes.append(len(batch))
        return run(model, batch)

    monkeypatch.setattr(engine, "_run", counting_run)
    engine.detect(frames)
    # Detector on all 6 frames, the landmark model on all 6 faces (the attention mesh refines in
    # the same pass); with refinement="iris", the iris model on all 12 eyes.
    assert batch_sizes == [len(frames), *expected[1:]]


def test_no_face_anywhere_skips_the_landmark_model(torch_engine, monkeypatch):
    calls = []
    run = torch_engine._run
    monkeypatch.setattr(torch_engine, "_run", lambda model, batch: calls.append(len(batch)) or run(model, batch))
    blank = np.full((120, 160, 3), 128, np.uint8)
    assert torch_engine.detect([blank, blank]) == [[], []]
    assert calls == [2]


def test_concurrent_callers_get_their_own_results(torch_engine, astronaut):
    from concurrent.futures import ThreadPoolExecutor

    frames = [images.rotated(astronaut, angle) for angle in (-20, -5, 10, 25)]
    expected = [torch_engine.detect([f])[0][0].points for f in frames]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda f: torch_engine.detect([f])[0][0].points, frames * 3))
    for i, points in enumerate(got):
        assert np.abs(points - expected[i % 4]).max() < BATCH_TOLERANCE_PX
