"""`synthbench leaderboard audit RECORD`: re-run a sample of a record's runs and compare predictions.

A record's numbers are recomputed by the board from its predictions; the predictions themselves
can only be checked by running the harness again. The audit takes, per setting, the first
`seeds_per_setting` seeds of the record (one by default), re-runs exactly those runs with the
record's backbone, input size and protocol recipe on the submission's own files (whose content
hash must be the record's), and compares every prediction:

- on the same device kind as the record (cpu/cuda), the harness is deterministic: any difference
  is a failure;
- on another device kind (bf16 GPU features against fp32 CPU ones) predictions may differ in a
  few borderline images: the agreement is reported, not judged.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.errors import SynthbenchError
from benchmark.protocol import PROTOCOLS
from benchmark.results import load_result


class AuditError(SynthbenchError):
    """The audit cannot run (task or submission files missing, content changed)."""


@dataclass
class RunAudit:
    setting: str
    seed: int
    n: int
    agree: int

    @property
    def agreement(self) -> float:
        return self.agree / self.n if self.n else 1.0


@dataclass
class AuditReport:
    record: Path
    recorded_device: str
    audit_device: str
    runs: list[RunAudit] = field(default_factory=list)

    @property
    def same_device_kind(self) -> bool:
        return _kind(self.recorded_device) == _kind(self.audit_device)

    @property
    def exact(self) -> bool:
        return all(run.agree == run.n for run in self.runs)

    @property
    def ok(self) -> bool:
        """Exact agreement is required on the same device kind; otherwise the audit only reports."""
        return self.exact or not self.same_device_kind

    def summary(self) -> str:
        lines = [f"audit of {self.record}: recorded on {self.recorded_device}, re-run on {self.audit_device}"]
        for run in self.runs:
            lines.append(f"  {run.setting:12s} seed {run.seed}: {run.agree}/{run.n} predictions agree ({run.agreement:.1%})")
        total_agree, total = sum(r.agree for r in self.runs), sum(r.n for r in self.runs)
        if self.exact:
            verdict = "every re-run prediction is identical"
        elif self.same_device_kind:
            verdict = "MISMATCH: the same device kind must reproduce the predictions exactly"
        else:
            verdict = f"agreement {total_agree}/{total} ({total_agree / max(total, 1):.2%}) across device kinds (not judged)"
        lines.append(f"  {verdict}")
        return "\n".join(lines)


def _kind(device: str) -> str:
    return "cuda" if str(device).startswith("cuda") else "cpu"


def audit_sample(record: dict[str, Any], seeds_per_setting: int = 1) -> dict[int, list[str]]:
    """{seed: settings} to re-run: the first `seeds_per_setting` seeds of each setting."""
    by_setting: dict[str, list[int]] = {}
    for run in record["runs"]:
        by_setting.setdefault(run["setting"], []).append(int(run["seed"]))
    plan: dict[int, list[str]] = {}
    for setting, seeds in by_setting.items():
        for seed in sorted(seeds)[:seeds_per_setting]:
            plan.setdefault(seed, []).append(setting)
    return plan


def audit_record(
    record_path: str | Path,
    task_source: str | Path,
    *,
    seeds_per_setting: int = 1,
    device: str = "auto",
    weights: str | None = None,
    cache_dir: str | None = None,
    image_size: int | None = None,
    progress: bool = False,
) -> AuditReport:
    """Re-run a sample of `record_path`'s runs on its submission folder (results/..) and compare.

    `image_size`: the backbone input size (default: the record's `backbone.input_size`, schema 3;
    older records need it given when they were not run at the backbone's native size).
    """
    from benchmark.device import resolve_device
    from benchmark.grid import run_grid
    from benchmark.submissions import load_submission
    from benchmark.tasks.record import load_task

    record_path = Path(record_path)
    record = load_result(record_path)
    task = load_task(task_source)
    if task.test_manifest_hash != record["task"]["test_manifest_hash"]:
        raise AuditError(
            f"{record_path}: recorded on test split {record['task']['test_manifest_hash'][:12]}, but --task "
            f"{task_source} has {task.test_manifest_hash[:12]}"
        )
    folder = record_path.resolve().parent.parent
    submission = load_submission(folder)
    if submission.content_hash != record["submission"]["content_hash"]:
        raise AuditError(
            f"{record_path}: content_hash {record['submission']['content_hash'][:12]} is not that of the files in "
            f"{folder} ({submission.content_hash[:12]}): the record was not computed on these files"
        )
    protocol = record["protocol"]["name"]
    overrides = {k: v for k, v in record["protocol"]["params"].items() if k in PROTOCOLS[protocol]} or None
    runs = {(run["setting"], int(run["seed"])): run for run in record["runs"]}
    torch_device = resolve_device(device)
    report = AuditReport(record_path, str(record["provenance"]["device"]), str(torch_device))
    with tempfile.TemporaryDirectory(prefix="synthbench-audit-") as scratch:
        for seed, settings in sorted(audit_sample(record, seeds_per_setting).items()):
            fixed = protocol in ("zero-shot", "checkpoint")
            redone = run_grid(
                task, submission, backbone=record["backbone"]["name"], protocol=protocol, seeds=[seed],
                settings=None if fixed else settings, cache_dir=cache_dir, device=str(torch_device), weights=weights,
                image_size=image_size or record["backbone"].get("input_size"), out_path=Path(scratch) / f"seed{seed}.json",
                progress=progress, validated=True, leakage_checked=False, protocol_overrides=overrides,
            )
            for run in redone["runs"]:
                original = runs.get((run["setting"], int(run["seed"])))
                if original is None:
                    continue
                agree = int(np.sum(np.asarray(run["predictions"]) == np.asarray(original["predictions"])))
                report.runs.append(RunAudit(run["setting"], int(run["seed"]), len(original["predictions"]), agree))
    if not report.runs:
        raise AuditError(f"{record_path}: no run of the record could be re-run")
    return report


__all__ = ["AuditError", "AuditReport", "RunAudit", "audit_record", "audit_sample"]
