"""`run_units`: the units run with the local or the Slurm executor, after one validation of each
submission (see the package docstring)."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Sequence

from ..errors import SynthbenchError
from ..protocol import lookup
from .local import run_local
from .plan import EXECUTORS, VALIDATION_MODES, RunReport, Unit
from .slurm import SlurmConfig, load_slurm_config, run_slurm


def run_units(
    units: Sequence[Unit],
    *,
    executor: str = "local",
    slurm_config: str | os.PathLike | SlurmConfig | None = None,
    validation: str = "full",
    wait: bool = True,
    progress: bool = True,
) -> RunReport:
    """Run `units` with the `local` or `slurm` executor; see the module docstring.

    validation: "full" validates each submission to run once, leakage gate included, before any
    compute; "no-leakage" skips the gate (never for official records); "none" when the caller has
    just validated them. `wait` (slurm): collect the jobs before returning.
    """
    lookup({name: name for name in EXECUTORS}, executor, "executor")
    lookup({name: name for name in VALIDATION_MODES}, validation, "validation mode")
    if validation == "no-leakage" and any(unit.options.official for unit in units):
        raise SynthbenchError("official records need the leakage gate: drop --no-leakage or --official")
    if validation == "no-leakage":  # the records must say the gate did not run
        units = [replace(u, options=replace(u.options, leakage_checked=False)) for u in units]
    if executor == "local":
        return run_local(units, validation=validation, progress=progress)
    config = slurm_config if isinstance(slurm_config, SlurmConfig) else load_slurm_config(slurm_config)
    return run_slurm(units, config, validation=validation, wait=wait, progress=progress)
