"""Where a job runs: CUDA when present (with AMP for forward-only work), CPU otherwise."""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch

from .memory import reuse_freed_memory


def resolve(requested: str = "auto") -> torch.device:
    """'auto' picks CUDA when available; 'cuda' without a GPU is an error, not a silent CPU run."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"config asks for device {requested!r} but torch sees no CUDA device; set device: auto or cpu")
    return torch.device(requested)


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA when enabled; a no-op on CPU so CPU numbers stay exact."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def setup(threads: int, seed: int, keep_freed_memory: bool = True) -> None:
    """Pin the thread count to the rule's `threads`, seed every generator and, with
    `keep_freed_memory`, keep freed memory for reuse (sweetspot.runtime.memory: batched CPU passes
    without page faults).

    Deterministic algorithms make the same config and seed give the same numbers on CPU.
    """
    if keep_freed_memory:
        reuse_freed_memory()
    torch.set_num_threads(max(1, int(threads)))
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
