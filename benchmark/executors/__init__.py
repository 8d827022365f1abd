"""Where the grid runs: in this process (`local`) or as Slurm jobs through submitit (`slurm`).

A *unit* of work is (task, submission folder, backbone, protocol): `benchmark.grid.run_grid` turns
it into one result record, written atomically and resumable (only the missing (setting, seed) runs
are computed). The records on disk are the results; this module only decides which units still
need work, runs them, and reports what failed.

    units = plan_units(task_dir, [sub_a, sub_b], backbones=["efficientnet-lite0"],
                       protocols=["linear-probe"], options=GridOptions(cache_dir="cache"))
    report = run_units(units, executor="slurm", slurm_config="configs/slurm.yaml")
    report.raise_if_failed()

Each submission to run is validated once, before any compute (`validation`: with or without the
leakage gate, or not at all when the caller just did); the jobs then skip validation. On Slurm
(configs/slurm.yaml holds the requests):

1. every unit whose record is complete is skipped, and one whose previous job is still queued or
   running is waited for rather than submitted twice (`<folder>/units.json` remembers the jobs);
2. one *encode* job per backbone fills the shared feature cache with every image of the task and
   of the submissions to run, so the grid jobs hit a warm cache instead of encoding the same
   images concurrently;
3. the units go in one job array per (backbone, protocol), each job depending on the encode job
   (`afterok`, and cancelled if it fails);
4. the submitting process waits with a progress bar over finished jobs, then checks each job's
   outcome (submitit's result file, or the scheduler's state for a job that died without one) and
   that its record is now complete, and reports every failure with its log files.

A rerun therefore submits only what is missing, incomplete or failed. A job killed half-way leaves
at most the runs `run_grid` had finished (never a partial file: records are written atomically);
a job that reaches its time limit is requeued by submitit and resumes.

Jobs run the same Python as the submitting process (`sys.executable`) and import this installed
package; submitit pickles only `UnitJob` and `Unit` (paths, names and numbers), never participant
data.

The package: `plan` (units, their states, what one unit does, reports: shared), `local` (the
local executor), `slurm` (the Slurm executor and its config), `cli` (`synthbench run` and
`run-all`). Everything public is re-exported here.
"""

from __future__ import annotations

from .cli import add_executor_arguments, register
from .local import run_local
from .run import run_units
from .plan import (
    EXECUTORS,
    VALIDATION_MODES,
    Failure,
    GridOptions,
    RunReport,
    Unit,
    UnitState,
    _Context,
    encode_features,
    expected_identity,
    expected_runs,
    find_submissions,
    plan_units,
    run_unit,
    unit_state,
)
from .slurm import (
    DEFAULT_SLURM_CONFIG,
    TERMINAL_STATES,
    EncodeJob,
    JobRequest,
    SlurmConfig,
    UnitJob,
    load_slurm_config,
    reads_feature_cache,
    run_slurm,
    scheduler_states,
)


#: _Context is re-exported for the tests that load a call's tasks and submissions the executors' way.
__all__ = [
    "DEFAULT_SLURM_CONFIG", "EXECUTORS", "VALIDATION_MODES", "EncodeJob", "Failure", "GridOptions", "JobRequest", "RunReport",
    "SlurmConfig", "Unit", "UnitJob", "UnitState", "add_executor_arguments", "encode_features",
    "expected_identity", "expected_runs", "find_submissions", "load_slurm_config", "plan_units",
    "TERMINAL_STATES", "reads_feature_cache", "register",
    "run_local", "run_slurm", "run_unit", "run_units", "scheduler_states", "unit_state", "_Context",
]
