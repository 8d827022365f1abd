"""The local executor: the units that need work, one after the other, in this process."""

from __future__ import annotations

import logging
import traceback
from typing import Sequence

from .plan import Failure, RunReport, Unit, _Context, run_unit

log = logging.getLogger(__name__)


def run_local(units: Sequence[Unit], *, validation: str = "full", progress: bool = True) -> RunReport:
    """Run the units that need work one after the other in this process.

    Each submission to run is validated once first (see `_Context.validation_problem`). A unit
    that raises is reported (with its traceback in the log) and the others still run.
    """
    report = RunReport("local", planned=len(units))
    context = _Context(units)
    for unit in units:
        state = context.state(unit)
        if context.settled(unit, validation, report, state.needs_work):
            continue
        report.submitted.append(unit.key)
        log.info("running %s (%s)", unit.label, state.detail or state.status)
        try:
            run_unit(unit, context.task(unit), validated=True, progress=progress)
        except Exception as exc:  # noqa: BLE001 - one broken unit must not stop the others
            log.error("%s failed:\n%s", unit.label, traceback.format_exc())
            report.failures.append(Failure(unit.label, f"{type(exc).__name__}: {exc}"))
            continue
        after = context.state(unit)
        if after.needs_work:
            report.failures.append(Failure(unit.label, f"ran, but its record is still {after.status}: {after.detail}"))
        else:
            report.succeeded.append(unit.key)
    return report
