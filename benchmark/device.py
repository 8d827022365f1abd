"""Choosing the torch device a run uses (`auto` picks CUDA when present, else the CPU), and the
device-dependent defaults: encoding batch size, data-loading workers, compute precision."""

from __future__ import annotations

import os

import torch

from .errors import HarnessError
from .registry import DEVICE_CHOICES  # what `--device` accepts (plain data, for the parsers)



def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The torch.device for `name` ("auto", "cpu", "cuda" or "cuda:N").

    "auto" is CUDA when a GPU is visible, else the CPU. Asking for CUDA on a machine without one
    is an error rather than a silent fallback: an official GPU run must not quietly run on CPU.
    """
    if isinstance(name, torch.device):
        name = str(name)
    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise HarnessError(
                f"device {name!r} requested but CUDA is not available (torch {torch.__version__}, "
                f"built with CUDA {torch.version.cuda or 'none'}); use --device cpu or --device auto"
            )
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise HarnessError(
                f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
        return device
    raise HarnessError(f"unknown device {name!r}; use one of: {', '.join(DEVICE_CHOICES)} (or cuda:N)")


def is_cuda(device: str | torch.device) -> bool:
    return torch.device(device).type == "cuda"


#: Encoding batch size when none is given: CPU-sized on the CPU, large on a GPU (a ViT-B at 224 px
#: in bf16 needs ~2 GiB of activations for 256 images; every official backbone fits on a 40 GB card).
CPU_ENCODE_BATCH_SIZE = 64
CUDA_ENCODE_BATCH_SIZE = 256
#: At most this many decoding workers by default on a GPU: 8 keep an H100 busy on 1024 px PNG tiles
#: at 224 px; more only add memory (every worker holds a copy of the dataset object).
CUDA_MAX_WORKERS = 8


def available_cpus() -> int:
    """CPUs this process may use: Slurm's allocation, else the affinity mask, else the CPU count."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def encoding_defaults(
    device: str | torch.device, batch_size: int | None = None, num_workers: int | None = None
) -> tuple[int, int]:
    """(batch_size, num_workers) for encoding on `device`; None means "choose for this device".

    CPU: 64 images per batch and no workers (decoding in workers would take cores from the model),
    exactly the values used before these defaults existed. CUDA: 256 per batch and one worker per
    CPU but one (the main process feeds the GPU), at most 8 and at least 1. Explicit values are
    kept as given (and checked).
    """
    cuda = is_cuda(resolve_device(device) if isinstance(device, str) else device)
    if batch_size is None:
        batch_size = CUDA_ENCODE_BATCH_SIZE if cuda else CPU_ENCODE_BATCH_SIZE
    if num_workers is None:
        num_workers = min(CUDA_MAX_WORKERS, max(1, available_cpus() - 1)) if cuda else 0
    if int(batch_size) < 1:
        raise HarnessError(f"encoding batch size must be >= 1, got {batch_size}")
    if int(num_workers) < 0:
        raise HarnessError(f"data-loader workers must be >= 0, got {num_workers}")
    return int(batch_size), int(num_workers)


def compute_precision(device: str | torch.device) -> str:
    """The arithmetic a backbone's forward pass uses on `device` (Backbone.encode's rule).

    bf16 autocast on CUDA, plain float32 on the CPU. Features computed one way differ from the other
    beyond float16 storage rounding, so the feature cache keys them apart by this name.
    """
    return "bf16-autocast" if is_cuda(device) else "fp32"
