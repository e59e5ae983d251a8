"""Which waiting task starts next, and with what: the admission rules (admission.py) applied to the queue
in its start order (order.py), with a reservation so that a big task is not overtaken forever.

The first task in line that cannot start for lack of resources is the head. Smaller tasks behind it may
start meanwhile (backfill) for `reserve_after_s`; after that nothing else starts until the head does, so
the head starts at the latest when enough running tasks have ended. A task that no part of the machine can
ever run (its GPU went away, say) is passed over, never waited for. Each waiting task examined gets the
reason it waits, for its status.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from mcp_trainer.engine.admission import Claims, Thresholds, busy_reason, decide, never_fits
from mcp_trainer.engine.metrics import Machine
from mcp_trainer.records import TaskRecord
from mcp_trainer.specs.resources import Grant, ResourceRequest

__all__ = ["DEFAULT_THRESHOLDS", "AdmissionConfig", "Plan", "Starts", "request_of"]

DEFAULT_THRESHOLDS = Thresholds()  # CPU 90%, memory 85%, disk 90% (with under 20 GB free)
_EXAMINED = 20  # waiting tasks looked at per round: the rest only wait behind them


@dataclass(frozen=True)
class AdmissionConfig:
    """How the owner decides what starts: thresholds, the head's reservation, a cap per user."""

    thresholds: Thresholds = field(default_factory=lambda: DEFAULT_THRESHOLDS)
    reserve_after_s: float = 60.0
    max_running_per_user: int | None = None


@dataclass
class Plan:
    """The task to claim now (with its grant), if any, and why each task examined waits."""

    pick: tuple[TaskRecord, Grant] | None
    reasons: dict[str, str] = field(default_factory=dict)


def request_of(record: TaskRecord) -> ResourceRequest:
    """A task's request; a task saved before requests existed claims a fair share of the cores."""
    return record.resources or ResourceRequest(memory_gb=0.0)


class Starts:
    """Picks the next task to start; remembers since when the head has waited."""

    def __init__(self, config: AdmissionConfig, limit: int) -> None:
        self.config = config
        self.limit = limit
        self._head: tuple[str, float] | None = None  # the head and since when it waits

    def plan(
        self,
        candidates: Sequence[TaskRecord],
        held: Sequence[tuple[str | None, Grant]],
        machine: Machine,
        *,
        now: float | None = None,
    ) -> Plan:
        """What starts next among `candidates` (in start order) beside the running tasks' grants `held`."""
        now = time.time() if now is None else now
        if not candidates:
            self._head = None
            return Plan(None)
        if len(held) >= self.limit:
            return Plan(
                None, {candidates[0].task_id: f"waiting for a free slot: {len(held)} of {self.limit} run"}
            )
        busy = busy_reason(machine, self.config.thresholds)
        if busy is not None:
            return Plan(None, {candidates[0].task_id: f"waiting: {busy}"})
        claims = Claims.of(held)
        fair = max(1, machine.cpus // min(self.limit, len(held) + len(candidates)))
        reasons: dict[str, str] = {}
        head: TaskRecord | None = None
        for record in candidates[:_EXAMINED]:
            why = self._capped(record, claims)
            if why is None:
                decision = decide(
                    request_of(record), machine, claims, fair_cores=fair, thresholds=self.config.thresholds
                )
                if isinstance(decision, Grant):
                    if head is not None and self._reserved(head, now):
                        reasons[record.task_id] = (
                            f"held back: {head.task_id}, ahead in line, waits for its resources"
                        )
                        break
                    self._forget(record.task_id)
                    return Plan((record, decision), reasons)
                why = decision
                impossible = never_fits(request_of(record), machine)
                if impossible is not None:
                    why = f"cannot start on this machine ({machine.describe()}): {impossible}"
                elif head is None:
                    head = record
            reasons[record.task_id] = why
        if head is None:
            self._head = None
        elif self._reserved(head, now):
            reasons[head.task_id] += "; nothing behind it starts first"
        return Plan(None, reasons)

    def _capped(self, record: TaskRecord, claims: Claims) -> str | None:
        cap = self.config.max_running_per_user
        if cap is None or record.user_id is None:
            return None
        running = claims.per_user.get(record.user_id, 0)
        if running < cap:
            return None
        return f"waiting: user {record.user_id!r} already runs {running} task(s), at most {cap}"

    def _reserved(self, head: TaskRecord, now: float) -> bool:
        """Whether the head has waited long enough that nothing may start before it."""
        if self._head is None or self._head[0] != head.task_id:
            self._head = (head.task_id, now)
        return now - self._head[1] >= self.config.reserve_after_s

    def _forget(self, task_id: str) -> None:
        if self._head is not None and self._head[0] == task_id:
            self._head = None
