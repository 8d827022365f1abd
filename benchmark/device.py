"""Choosing the torch device a run uses: `auto` picks CUDA when present, else the CPU."""

from __future__ import annotations

import torch

from .errors import HarnessError

#: The values `--device` accepts.
DEVICE_CHOICES = ("auto", "cpu", "cuda")


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
