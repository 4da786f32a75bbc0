"""Device choice and the inference-ready form of a converted graph."""

from __future__ import annotations

import logging
import threading
import warnings

import torch

from .graph import TFLiteGraph

logger = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    """`auto` -> the first CUDA device when torch sees one, else the CPU; anything else as given."""
    if device == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device: {device!r} is not a torch device") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} requested but torch sees no CUDA device")
    return resolved


def enable_cpu_fusion() -> None:
    """oneDNN Graph fusion for TorchScript on CPU (conv + bias + PReLU/ReLU/add in one kernel):
    about 2x faster at batch 1. Process-wide; each new input shape is compiled once (~0.1 s)."""
    torch.jit.enable_onednn_fusion(True)


def optimize(graph: TFLiteGraph, example: torch.Tensor) -> torch.nn.Module:
    """Traced and frozen: the op list becomes one TorchScript graph with constant weights, which
    drops the per-op Python dispatch (~30 % faster on CPU at batch 1). The trace is shape-generic
    in the batch dimension (the graph has no batch-dependent control flow)."""
    with torch.no_grad(), warnings.catch_warnings():
        # torch 2.13 marks TorchScript deprecated in favour of torch.compile, which needs a C++
        # toolchain at run time on CPU (absent from the slim image); TorchScript still works.
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(graph, (example,), check_trace=False, strict=False)
        return torch.jit.freeze(traced.eval())


# The oneDNN Graph switch is process-wide and read whenever TorchScript compiles a plan for a new
# input shape, so every call of an unfused model holds this lock while the switch is off.
_UNFUSED_LOCK = threading.RLock()


class Unfused:
    """Runs a traced module with oneDNN Graph fusion off (its plans are compiled without it).

    Why: on the lane-merged attention mesh (lanes.py) oneDNN Graph (torch 2.13) computes wrong
    landmarks, by up to ~7 px, once the module has run at a second batch size; unfused, the
    merged module matches the op-by-op graph to 1e-4 at every batch size and is as fast as the
    fused op-by-op one (README)."""

    def __init__(self, module: torch.nn.Module):
        self.module = module

    def __call__(self, *inputs: torch.Tensor):
        with _UNFUSED_LOCK:
            was_enabled = torch.jit.onednn_fusion_enabled()
            torch.jit.enable_onednn_fusion(False)
            try:
                return self.module(*inputs)
            finally:
                torch.jit.enable_onednn_fusion(was_enabled)
