"""Queue maintenance in the Python API: `maintain` on demand, and a periodic run by the queue's owner.

The file work is engine/maintenance.py; here it runs in a worker thread, one run at a time per process,
and the periodic loop logs a failed run and tries again at the next interval (never stopping the server).
"""

from __future__ import annotations

import logging
import math

import anyio

from mcp_trainer.engine.maintenance import DAY_S, Policy, run_maintenance
from mcp_trainer.errors import InvalidInputError, TrainerError
from mcp_trainer.offload import off_loop
from mcp_trainer.service.audit import audited
from mcp_trainer.service.core import ServiceCore
from mcp_trainer.views.maintenance import MaintenanceReport

__all__ = [
    "DEFAULT_ARCHIVE_AFTER_DAYS",
    "DEFAULT_MAINTENANCE_INTERVAL_S",
    "DEFAULT_PRUNE_WORK_AFTER_DAYS",
    "FIRST_MAINTENANCE_AFTER_S",
    "MAX_DAYS",
    "MaintenanceMethods",
    "maintenance_policy",
]

log = logging.getLogger(__name__)
DEFAULT_MAINTENANCE_INTERVAL_S = 6 * 3600.0
DEFAULT_ARCHIVE_AFTER_DAYS = 30.0
DEFAULT_PRUNE_WORK_AFTER_DAYS = 7.0
FIRST_MAINTENANCE_AFTER_S = 300.0  # after start-up, when recovery and the first tasks are under way
MAX_DAYS = 36_500.0


def maintenance_policy(
    interval_s: float | None, archive_after_days: float, prune_work_after_days: float
) -> tuple[float | None, Policy]:
    """The periodic interval (None: no periodic run) and the policy, checked; raises InvalidInputError."""
    if interval_s is not None and (not math.isfinite(interval_s) or interval_s < 0):
        raise InvalidInputError(
            f"maintenance_interval_s must be a positive number of seconds, or 0 or None to run no periodic "
            f"maintenance (got {interval_s})."
        )
    for name, days in (
        ("archive_after_days", archive_after_days),
        ("prune_work_after_days", prune_work_after_days),
    ):
        if not (math.isfinite(days) and 0 <= days <= MAX_DAYS):
            raise InvalidInputError(f"{name} must be between 0 and {MAX_DAYS:.0f} days (got {days}).")
    if archive_after_days < prune_work_after_days:
        raise InvalidInputError(
            f"archive_after_days ({archive_after_days:g}) must be at least prune_work_after_days "
            f"({prune_work_after_days:g}): archiving a task removes its work folder, study included.",
            "Raise archive_after_days or lower prune_work_after_days.",
        )
    policy = Policy(
        archive_after_s=archive_after_days * DAY_S, prune_work_after_s=prune_work_after_days * DAY_S
    )
    return (interval_s or None), policy


class MaintenanceMethods(ServiceCore):
    """Prune ended tasks' work files, archive old task records, report disk use and retry candidates."""

    maintenance_interval_s: float | None
    policy: Policy
    _maintenance_lock: anyio.Lock

    @audited("maintain", "dry_run")
    async def maintain(self, dry_run: bool = False) -> MaintenanceReport:
        """Run queue maintenance now and say what it did: a fine-tune's checkpoints go once its task ended
        (kept while a retry could resume them), a task's work folder (a search's study.journal) once it
        ended `prune_work_after_days` ago, and tasks that ended `archive_after_days` ago move to
        `queue/archive/` with their task file, log and work folder removed. With `dry_run`, nothing changes
        and the report says what a run would do. Any process sharing the queue may call it. Raises
        TrainerError when the disk refuses a change (what was done before stays done)."""
        parts = self._parts()
        async with self._maintenance_lock:
            try:
                return await off_loop(
                    lambda: run_maintenance(parts.store, self.models_dir, self.policy, dry_run=dry_run)
                )
            except OSError as exc:
                raise TrainerError(
                    f"Maintenance stopped in {self.queue_dir}: {exc.strerror or exc}.",
                    "Fix the queue directory's permissions or free disk space, then run it again.",
                ) from None

    async def _maintain_periodically(self, interval_s: float) -> None:
        """While this process owns the queue, run maintenance every `interval_s` (the first run after at
        most FIRST_MAINTENANCE_AFTER_S); a failed run is logged and the next one comes as planned."""
        await anyio.sleep(min(interval_s, FIRST_MAINTENANCE_AFTER_S))
        while True:
            if self._parts().scheduler.is_owner:
                try:
                    report = await self.maintain()
                except Exception:
                    log.exception("queue maintenance failed; the next run is in %g s", interval_s)
                else:
                    _log_report(report)
            await anyio.sleep(interval_s)


def _log_report(report: MaintenanceReport) -> None:
    done = {
        "checkpoints": report.checkpoints_pruned,
        "work folders": report.work_pruned,
        "orphan work folders": report.orphans_pruned,
        "tasks archived": report.archived,
    }
    parts = [f"{name} {freed.count} ({freed.bytes:,} bytes)" for name, freed in done.items() if freed.count]
    if parts or report.problems:
        log.info("queue maintenance: %s", "; ".join(parts + report.problems) or "nothing to do")
