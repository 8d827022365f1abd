"""Device-dependent defaults: encoding batch size, data-loading workers and compute precision."""

from __future__ import annotations

import os

import pytest
import torch

from benchmark.device import available_cpus, compute_precision, encoding_defaults
from benchmark.errors import HarnessError

CUDA = torch.device("cuda")  # a device object: nothing here touches a GPU


def test_cpu_defaults_are_the_historical_ones():
    assert encoding_defaults("cpu") == (64, 0)
    assert encoding_defaults(torch.device("cpu"), None, None) == (64, 0)


@pytest.mark.parametrize("cpus,workers", [("16", 8), ("8", 7), ("2", 1), ("1", 1)])
def test_cuda_defaults_use_large_batches_and_the_allocated_cpus(monkeypatch, cpus, workers):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", cpus)
    assert available_cpus() == int(cpus)
    assert encoding_defaults(CUDA) == (256, workers)


def test_auto_follows_the_visible_device(monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert encoding_defaults("auto") == (64, 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert encoding_defaults("auto") == (256, 3)


def test_explicit_values_are_kept_and_checked():
    assert encoding_defaults(CUDA, 32, 0) == (32, 0)
    assert encoding_defaults("cpu", 128, 3) == (128, 3)
    assert encoding_defaults(CUDA, batch_size=16) == (16, encoding_defaults(CUDA)[1])
    with pytest.raises(HarnessError, match="batch size must be >= 1, got 0"):
        encoding_defaults("cpu", 0, None)
    with pytest.raises(HarnessError, match="workers must be >= 0, got -1"):
        encoding_defaults("cpu", None, -1)


def test_available_cpus_without_slurm(monkeypatch):
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert available_cpus() == expected


def test_compute_precision_names_the_forward_pass_arithmetic():
    assert compute_precision("cpu") == "fp32"
    assert compute_precision(torch.device("cpu")) == "fp32"
    assert compute_precision(CUDA) == "bf16-autocast"
    assert compute_precision("cuda:1") == "bf16-autocast"
