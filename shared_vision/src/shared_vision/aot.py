"""Ahead-of-time compiled graphs for CPU (torch AOTInductor): build once, load without a compiler.

    python -m shared_vision.aot DIR --model face_landmark_with_attention --size 192

writes DIR/<model>.aoti.so (the model as one shared library, weights inside) and
DIR/<model>.aoti.json (what it was built from and for). Building needs a C++ compiler (an image's
build stage has one; the runtime image has none); loading needs only torch.

Why: op by op, each small convolution on CPU pays ~30 us of fixed setup, and the attention mesh
has ~100 of them on 2x2 to 24x24 maps. Compiled, the depthwise ones become fused loops (graph.py,
depthwise_taps_max) with their bias and activation, and the Python/TorchScript dispatch is gone:
the attention mesh's forward pass drops from ~6.2 to ~3.2 ms at batch 1 (fatigue README).

The library is machine code for one CPU vector extension and one torch build: `load_compiled`
refuses (returns None and says why) a library built for another torch, another or a wider CPU
capability than this process has, or from other weights, and the caller keeps its TorchScript
path. ATEN_CPU_CAPABILITY=avx2 at build time makes a library that any AVX2 CPU can load.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .graph import load_graph

logger = logging.getLogger(__name__)

FORMAT = 1
SUFFIX_SO = ".aoti.so"
SUFFIX_INFO = ".aoti.json"
# Depthwise convolutions on maps up to this width compile to fused taps; wider ones stay conv2d
# calls (oneDNN wins there). Measured on the attention mesh: 12 or 24 -> 3.2 ms, 48 -> 3.6 ms.
DEPTHWISE_TAPS_MAX = 24
# torch's CPU capabilities in increasing order: a library needs at most what the process has.
_CAPABILITY_ORDER = ("DEFAULT", "AVX2", "AVX512")
# The x86-64 micro-architecture levels that match them (v3: AVX2 + FMA; v4: AVX512 F/BW/CD/DQ/VL).
_MARCH = {"DEFAULT": "x86-64", "AVX2": "x86-64-v3", "AVX512": "x86-64-v4"}


def compiled_paths(weights_dir: str | Path, model: str) -> tuple[Path, Path]:
    base = Path(weights_dir) / model
    return base.with_name(model + SUFFIX_SO), base.with_name(model + SUFFIX_INFO)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _build_capability() -> str:
    """The vector extension inductor compiles the kernels for, as torch names CPU capabilities:
    ATEN_CPU_CAPABILITY (avx2, avx512; any case) if set, else the best this CPU has."""
    from torch._inductor import cpu_vec_isa

    wanted = os.environ.get("ATEN_CPU_CAPABILITY")
    if wanted:
        if wanted.lower() not in ("avx2", "avx512"):
            raise ValueError(f"ATEN_CPU_CAPABILITY={wanted!r}: avx2 or avx512")
        os.environ["ATEN_CPU_CAPABILITY"] = wanted.lower()  # inductor reads it lower case only
    isa = str(cpu_vec_isa.pick_vec_isa())
    if "avx512" in isa or "amx" in isa:
        return "AVX512"
    return "AVX2" if "avx2" in isa else "DEFAULT"


def on_x86_64() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def compile_graph(
    weights_dir: str | Path, model: str, size: int, max_batch: int = 64, depthwise_taps_max: int = DEPTHWISE_TAPS_MAX
) -> Path:
    """Compile `weights_dir/<model>.safetensors` (NHWC input size x size x 3, batch 1..max_batch)."""
    import torch._inductor.config as inductor_config

    if not on_x86_64():
        raise RuntimeError(f"ahead-of-time compilation is x86-64 only (this is {platform.machine()})")
    weights_dir = Path(weights_dir)
    source = weights_dir / f"{model}.safetensors"
    so_path, info_path = compiled_paths(weights_dir, model)
    capability = _build_capability()
    graph = load_graph(source, depthwise_taps_max=depthwise_taps_max, channels_last_weights=True)
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    with torch.no_grad():
        exported = torch.export.export(graph, (torch.zeros(2, size, size, 3),), dynamic_shapes=(({0: batch},),))
    # freezing: weights become constants (folded, no parameter lookups). threads=1: the fused
    # loops run single-threaded (they are small; a thread count baked in at build time would not
    # match the container's budget), whatever torch's thread count while compiling; convolutions
    # and matmuls still use the running process's threads.
    # march: the whole library (kernels and wrapper) for exactly the recorded capability; inductor's
    # default, -march=native, would use whatever else the build machine has.
    patch = {"freezing": True, "cpp.threads": 1, "cpp.march": _MARCH[capability]}
    with tempfile.TemporaryDirectory() as tmp, inductor_config.patch(patch):
        package = torch._inductor.aoti_compile_and_package(exported, package_path=str(Path(tmp) / "model.pt2"))
        with zipfile.ZipFile(package) as archive:
            libraries = [name for name in archive.namelist() if name.endswith(".so")]
            if len(libraries) != 1:
                raise RuntimeError(f"{model}: expected one shared library in the AOTInductor package, got {libraries}")
            with archive.open(libraries[0]) as src, open(so_path, "wb") as dst:
                shutil.copyfileobj(src, dst)
    info = {
        "format": FORMAT,
        "model": model,
        "torch": torch.__version__,
        "cpu_capability": capability,
        "input_shape": [size, size, 3],
        "max_batch": max_batch,
        "source_sha256": _sha256(source),
        "depthwise_taps_max": depthwise_taps_max,
        "channels_last_weights": True,
    }
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    logger.info("%s: compiled for %s, torch %s -> %s", model, info["cpu_capability"], info["torch"], so_path)
    return so_path


@dataclass
class CompiledGraph:
    """A compiled graph; called like the TFLiteGraph it came from: NHWC batch -> list of outputs."""

    runner: object
    info: dict

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.dim() != 4 or x.shape[0] < 1 or list(x.shape[1:]) != self.info["input_shape"]:
            raise ValueError(
                f"compiled {self.info['model']}: input {tuple(x.shape)}, built for (N, *{self.info['input_shape']})"
            )
        limit = self.info["max_batch"]
        if x.shape[0] <= limit:  # one pass
            return self.runner.run([x.float().contiguous()])
        # Larger batches than the library was built for run in chunks of its largest.
        parts = [self.runner.run([chunk.float().contiguous()]) for chunk in torch.split(x, limit)]
        return [torch.cat(outputs) for outputs in zip(*parts, strict=True)]


def incompatibility(info: dict, weights_dir: Path, model: str) -> str | None:
    """Why a library described by `info` must not run in this process; None if it may."""
    if info.get("format") != FORMAT or info.get("model") != model:
        return f"describes {info.get('model')!r} format {info.get('format')!r}, not {model!r} format {FORMAT}"
    if info.get("torch") != torch.__version__:
        return f"built with torch {info.get('torch')}, this is torch {torch.__version__}"
    built, here = info.get("cpu_capability"), torch.backends.cpu.get_cpu_capability()
    if built not in _CAPABILITY_ORDER or here not in _CAPABILITY_ORDER:
        return f"CPU capability {built!r} (built) / {here!r} (here) unknown"
    if _CAPABILITY_ORDER.index(built) > _CAPABILITY_ORDER.index(here):
        return f"built for {built}, this CPU has {here}"
    source = weights_dir / f"{model}.safetensors"
    if not source.is_file() or info.get("source_sha256") != _sha256(source):
        return f"built from other weights than {source}"
    return None


def load_compiled(weights_dir: str | Path, model: str) -> tuple[CompiledGraph | None, str]:
    """(the compiled graph, "") or (None, why not): no library, or one unfit for this process."""
    weights_dir = Path(weights_dir)
    so_path, info_path = compiled_paths(weights_dir, model)
    if not so_path.is_file() or not info_path.is_file():
        return None, f"no {so_path.name} in {weights_dir}"
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError) as exc:
        return None, f"{info_path.name}: {exc}"
    reason = incompatibility(info, weights_dir, model)
    if reason:
        return None, f"{so_path.name}: {reason}"
    try:
        runner = torch._C._aoti.AOTIModelContainerRunnerCpu(str(so_path), 1)
    except RuntimeError as exc:
        return None, f"{so_path.name}: {exc}"
    return CompiledGraph(runner, info), ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights_dir", type=Path, help="directory with the converted .safetensors")
    parser.add_argument("--model", required=True, help="model name (the .safetensors file's stem)")
    parser.add_argument("--size", type=int, required=True, help="input height = width in pixels")
    parser.add_argument("--max-batch", type=int, default=64)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not on_x86_64():  # the image still builds; its engine runs TorchScript and says why
        logger.warning("%s: not compiled, ahead-of-time compilation is x86-64 only", args.model)
        return 0
    so_path = compile_graph(args.weights_dir, args.model, args.size, args.max_batch)
    compiled, reason = load_compiled(args.weights_dir, args.model)
    if compiled is None:  # built here, so it must load here
        logger.error("%s", reason)
        return 1
    logger.info("%s loads (%d bytes)", so_path, so_path.stat().st_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
