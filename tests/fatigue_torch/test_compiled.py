"""The attention mesh compiled ahead of time (shared_vision.aot): same landmarks as TorchScript,
refused (with the reason, TorchScript kept) when the library does not fit the process.

Compiling takes ~1.5-2 min on 2 cores, once per session (needs g++, as the image's build stage)."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fatigue import images

from shared_vision import aot
from shared_vision.graph import _depthwise_taps, load_graph

pytestmark = pytest.mark.timeout(900)  # the session's compile runs in the first test's setup

MODEL = "face_landmark_with_attention"
MAX_BATCH = 4  # small, so that a batch above it (chunked) is cheap to test


@pytest.fixture(scope="session")
def compiled_dir(weights_dir, tmp_path_factory):
    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.fail("compiling the attention mesh needs a C++ compiler (g++)", pytrace=False)
    out = tmp_path_factory.mktemp("face_mesh_compiled")
    for source in weights_dir.glob("*.safetensors"):
        shutil.copy(source, out / source.name)
    aot.compile_graph(out, MODEL, 192, max_batch=MAX_BATCH)
    return out


@pytest.fixture(scope="session")
def compiled_engine(compiled_dir):
    from vigil_fatigue.torch_engine.engine import TorchLandmarkEngine

    engine = TorchLandmarkEngine(compiled_dir, device="cpu", max_faces=4)
    yield engine
    engine.close()


def _faces():
    """Real faces, upright, rotated, mirrored and smaller: one frame each."""
    frames = []
    for frame in (images.astronaut_bgr(), images.grace_hopper_bgr()):
        frames += [frame, cv2.flip(frame, 1), images.rotated(frame, 25), images.scaled(frame, 0.6)]
    return frames


def test_engine_runs_the_compiled_library(compiled_engine, torch_engine):
    assert compiled_engine.landmark_runtime == "aot-compiled"
    assert compiled_engine.compiled_unavailable == ""
    # The session's plain weights directory has no library: TorchScript, with the reason.
    assert torch_engine.landmark_runtime == "torchscript"
    assert "no face_landmark_with_attention.aoti.so" in torch_engine.compiled_unavailable


def test_compiled_landmarks_equal_torchscript(compiled_engine, torch_engine):
    frames = _faces()
    compiled = compiled_engine.detect(frames)  # 8 faces in one call: two chunks of MAX_BATCH
    scripted = torch_engine.detect(frames)
    for k, (a, b) in enumerate(zip(compiled, scripted, strict=True)):
        assert len(a) == len(b) >= 1, k
        for face_a, face_b in zip(a, b, strict=True):
            assert face_a.points.shape == (478, 3)
            assert np.abs(face_a.points - face_b.points).max() < 1e-3, k  # pixels
            assert face_a.score == pytest.approx(face_b.score)


def test_compiled_graph_batches_and_chunks(compiled_dir):
    library, reason = aot.load_compiled(compiled_dir, MODEL)
    assert library is not None, reason
    graph = load_graph(compiled_dir / f"{MODEL}.safetensors")
    x = torch.rand(MAX_BATCH + 2, 192, 192, 3, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = graph(x)
        whole = library(x)  # above max_batch: chunks, concatenated
        single = library(x[:1])
    for e, w, s in zip(expected, whole, single, strict=True):
        assert w.shape == e.shape
        assert torch.allclose(w, e, atol=2e-3), (w - e).abs().max()
        assert torch.allclose(s, e[:1], atol=2e-3)
    for bad in (torch.zeros(1, 128, 128, 3), torch.zeros(192, 192, 3), torch.zeros(0, 192, 192, 3)):
        with pytest.raises(ValueError, match="built for"):
            library(bad)


def _variant(compiled_dir, tmp_path, **changes):
    """A copy of the compiled directory with its .aoti.json changed (None: key removed)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    for path in compiled_dir.iterdir():
        shutil.copy(path, tmp_path / path.name)
    info_path = tmp_path / f"{MODEL}.aoti.json"
    info = json.loads(info_path.read_text())
    for key, value in changes.items():
        if value is None:
            info.pop(key, None)
        else:
            info[key] = value
    info_path.write_text(json.dumps(info))
    return tmp_path


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"torch": "1.0.0"}, "built with torch 1.0.0"),
        ({"source_sha256": "0" * 64}, "other weights"),
        ({"format": 99}, "format"),
        ({"model": "face_landmark"}, "describes"),
        ({"cpu_capability": "AVX1024"}, "unknown"),
        ({"cpu_capability": None}, "unknown"),
    ],
)
def test_unfit_library_is_refused_with_the_reason(compiled_dir, tmp_path, changes, reason):
    from vigil_fatigue.torch_engine.engine import TorchLandmarkEngine

    directory = _variant(compiled_dir, tmp_path, **changes)
    library, why = aot.load_compiled(directory, MODEL)
    assert library is None and reason in why
    engine = TorchLandmarkEngine(directory, device="cpu", max_faces=1, warmup=False)
    try:
        assert engine.landmark_runtime == "torchscript" and reason in engine.compiled_unavailable
        assert len(engine.detect([images.astronaut_bgr()])[0]) == 1  # and it still works
    finally:
        engine.close()


def test_library_for_a_wider_cpu_is_refused(compiled_dir, tmp_path, monkeypatch):
    directory = _variant(compiled_dir, tmp_path, cpu_capability="AVX512")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    library, why = aot.load_compiled(directory, MODEL)
    assert library is None and "built for AVX512, this CPU has AVX2" in why


def test_broken_or_missing_files_are_refused(compiled_dir, tmp_path):
    directory = _variant(compiled_dir, tmp_path)
    (directory / f"{MODEL}.aoti.json").write_text("{not json")
    assert aot.load_compiled(directory, MODEL)[0] is None
    (directory / f"{MODEL}.aoti.json").unlink()
    library, why = aot.load_compiled(directory, MODEL)
    assert library is None and "no face_landmark_with_attention.aoti.so" in why
    directory = _variant(compiled_dir, tmp_path / "garbage")
    (directory / f"{MODEL}.aoti.so").write_bytes(b"\x7fELF not a library")
    library, why = aot.load_compiled(directory, MODEL)
    assert library is None and why


def test_compiled_off_keeps_torchscript(compiled_dir):
    from vigil_fatigue.torch_engine.engine import TorchLandmarkEngine

    engine = TorchLandmarkEngine(compiled_dir, device="cpu", max_faces=1, warmup=False, compiled=False)
    try:
        assert engine.landmark_runtime == "torchscript" and "off" in engine.compiled_unavailable
    finally:
        engine.close()


@pytest.mark.parametrize(("channels", "size", "kernel", "stride", "pad"), [
    (16, 24, 3, 1, (1, 1, 1, 1)),
    (8, 9, 3, 2, (0, 1, 0, 1)),  # TFLite's asymmetric SAME padding for stride 2
    (4, 2, 3, 1, (1, 1, 1, 1)),
    (24, 16, 5, 1, (2, 2, 2, 2)),
    (3, 7, 5, 2, (1, 2, 1, 2)),
])  # fmt: skip
def test_depthwise_taps_equal_conv2d(channels, size, kernel, stride, pad):
    generator = torch.Generator().manual_seed(channels * size)
    x = torch.randn(2, channels, size, size, generator=generator)
    weight = torch.randn(channels, 1, kernel, kernel, generator=generator)
    padded = F.pad(x, pad)
    expected = F.conv2d(padded, weight, None, stride, 0, 1, channels)
    got = _depthwise_taps(padded, weight, (stride, stride))
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("name", ["face_detection_short_range", "face_landmark_with_attention"])
def test_graph_with_depthwise_taps_equals_the_graph(weights_dir, name):
    """The rewrite on the real models' depthwise layers (every width, eager): same outputs."""
    size = 128 if name == "face_detection_short_range" else 192
    x = torch.rand(2, size, size, 3, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = load_graph(weights_dir / f"{name}.safetensors")(x)
        got = load_graph(weights_dir / f"{name}.safetensors", depthwise_taps_max=1 << 16)(x)
    for e, g in zip(expected, got, strict=True):
        assert torch.allclose(g, e, atol=1e-3, rtol=1e-4), (g - e).abs().max()


@pytest.mark.parametrize("name", ["face_detection_short_range", "face_landmark_with_attention"])
def test_graph_with_channels_last_weights_equals_the_graph(weights_dir, name):
    """Weights stored channels-last (the compiled form's layout): same outputs, and every
    convolution that is not a matmul or taps gets its weight in that layout."""
    size = 128 if name == "face_detection_short_range" else 192
    x = torch.rand(2, size, size, 3, generator=torch.Generator().manual_seed(2))
    graph = load_graph(weights_dir / f"{name}.safetensors", channels_last_weights=True)
    relaid = [b for n, b in graph.named_buffers() if n.startswith("_channels_last_")]
    assert relaid and all(b.is_contiguous(memory_format=torch.channels_last) for b in relaid)
    with torch.inference_mode():
        expected = load_graph(weights_dir / f"{name}.safetensors")(x)
        got = graph(x)
    for e, g in zip(expected, got, strict=True):
        assert torch.allclose(g, e, atol=1e-4, rtol=1e-5), (g - e).abs().max()


def test_library_for_avx2_has_no_avx512_code(weights_dir, tmp_path, monkeypatch):
    """AOT_CPU_CAPABILITY=AVX2 (the image's build arg): kernels without AVX512 instructions, so an
    AVX2-only CPU can run them; recorded as AVX2; same outputs. (The detector: a 30 s compile.)"""
    model = "face_detection_short_range"
    shutil.copy(weights_dir / f"{model}.safetensors", tmp_path / f"{model}.safetensors")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "AVX2")  # upper case, as a build arg may give it
    so_path = aot.compile_graph(tmp_path, model, 128, max_batch=2)
    info = json.loads((tmp_path / f"{model}.aoti.json").read_text())
    assert info["cpu_capability"] == "AVX2"
    objdump = shutil.which("objdump")
    if objdump is not None:  # binutils comes with g++
        import subprocess

        listing = subprocess.run([objdump, "-d", str(so_path)], capture_output=True, text=True, check=True).stdout
        assert "ymm" in listing  # vectorised
        assert "zmm" not in listing  # but no AVX512 register anywhere
    library, reason = aot.load_compiled(tmp_path, model)
    assert library is not None, reason
    x = torch.rand(2, 128, 128, 3, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected = load_graph(tmp_path / f"{model}.safetensors")(x)
        got = library(x)
    for e, g in zip(expected, got, strict=True):
        assert torch.allclose(g, e, atol=1e-3, rtol=1e-4), (g - e).abs().max()
