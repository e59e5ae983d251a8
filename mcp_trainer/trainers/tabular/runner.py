"""The trials of one search, run in helper processes that the task's worker supervises.

Helpers are forked from the worker: they inherit the loaded data, the prepared folds and the objective
without pickling, and they stay in the worker's process group, so a cancel ends them with it. Each asks
the kernel to kill it if the worker dies. They share one count of the trials still to start, and each
claims one before it starts a trial, so the study ends with exactly `n_trials` trials.

The worker supervises; it runs no trial itself. A Python-level timeout cannot interrupt a long C call
(an SVC fit ignores signal handlers until it returns), so limits are kept by ending processes:

- a trial that runs past its limit: its helper is killed, the trial marked failed with the reason, and a
  new helper is forked in its place;
- the search's deadline (`timeout_s`), a request to finish now, or a stop: every trial in flight ends;
- a helper that dies on its own: its trial is marked failed and the reason reported as a warning, and a
  new helper takes its place, up to one replacement per helper.

Helpers are not daemonic processes, so a trial may start processes of its own.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import optuna
from optuna.trial import TrialState

from mcp_trainer.trainers.base import StopRequested
from mcp_trainer.trainers.threads import limit_threads

__all__ = ["EndedTrial", "RunOutcome", "SearchRunner", "Snapshot"]

log = logging.getLogger(__name__)
Objective = Callable[[optuna.Trial], float]
_TICK_S = 0.05
_STUDY_EVERY_S = 0.25  # how often the supervisor reads the study back (a journal replay) for progress
_IDLE = -1.0


@dataclass(frozen=True)
class Snapshot:
    """Where the search stands, for progress reports."""

    finished: int  # trials complete or failed
    completed: list[float]  # the durations of the completed trials, in seconds
    running: list[float]  # how long each trial in flight has run, in seconds
    best: optuna.trial.FrozenTrial | None
    limit_s: float  # the per-trial limit in force


@dataclass(frozen=True)
class EndedTrial:
    """A trial the supervisor ended (it counts as failed)."""

    number: int
    params: str
    why: str

    def __str__(self) -> str:
        return f"trial {self.number} ({self.params}) {self.why}"


@dataclass
class RunOutcome:
    timed_out: bool = False
    finished_early: bool = False
    ended: list[EndedTrial] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # helpers that died, and why


@dataclass
class _Helper:
    process: Any
    conn: Connection  # the helper's last words: the error that ended it
    slot: Any  # shared [trial number, start time] of the trial it runs; trial number -1 when idle
    replaces: int = 0  # how many helpers died before this one in its place


class SearchRunner:
    """Runs `objective` for the trials still to run, in `workers` helper processes."""

    def __init__(
        self,
        study: optuna.Study,
        objective: Objective,
        *,
        reopen: Callable[[int], optuna.Study],
        n_trials: int,
        workers: int,
        timeout_s: float | None,
        trial_limit_s: Callable[[list[float]], float],
        on_tick: Callable[[Snapshot], None],
        should_stop: Callable[[], bool],
        should_finish: Callable[[], bool],
    ) -> None:
        self.study = study
        self.objective = objective
        self.reopen = reopen
        self.workers = max(1, workers)
        self.trial_limit_s = trial_limit_s
        self.on_tick = on_tick
        self.should_stop = should_stop
        self.should_finish = should_finish
        # fork, not spawn: helpers need the objective's closure and data, and must not re-import the stack.
        # The worker's only other thread (its stop listener) holds no lock a helper could need.
        self._ctx = multiprocessing.get_context("fork")
        self._left = self._ctx.Value("i", n_trials - len(study.get_trials(deepcopy=False)))
        self._closed = self._ctx.Value("b", False)  # no trial may start any more
        # One deadline for every process: CLOCK_MONOTONIC is system-wide.
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self._helpers: list[_Helper] = []
        self._next_index = 0
        self._completed: list[float] = []
        self._limit = trial_limit_s([])

    # -- the supervisor --------------------------------------------------------------------------------

    def run(self) -> RunOutcome:
        """Run the search to its end; raises StopRequested (from `should_stop`'s caller) untouched."""
        outcome = RunOutcome()
        if self._left.value <= 0:
            return outcome
        # One BLAS/OpenMP thread per process: the processes already fill the CPUs. Set before forking and
        # inherited, never set again in a helper (see threads.py: OpenBLAS restarts its pool after a fork).
        with limit_threads(1):
            for _ in range(min(self.workers, self._left.value)):
                self._helpers.append(self._spawn())
            try:
                self._supervise(outcome)
            finally:
                self._end_all()
        self._fail_orphans()
        return outcome

    def _supervise(self, outcome: RunOutcome) -> None:
        studied = 0.0
        while self._helpers:
            if self.should_stop():
                self._end_in_flight(outcome, "the task was stopped", record=False)
                raise StopRequested
            if self.should_finish() and not outcome.finished_early:
                outcome.finished_early = True
                self._end_in_flight(outcome, "stop_training_task ended the search")
            if self.deadline is not None and time.monotonic() >= self.deadline and not outcome.timed_out:
                outcome.timed_out = True
                self._end_in_flight(outcome, "timeout_s ended the search")
            self._check_helpers(outcome)
            now = time.monotonic()
            if now - studied >= _STUDY_EVERY_S:
                studied = now
                self.on_tick(self._snapshot())
            # Wakes at once when a helper exits (the search's end, or a death), else after a tick.
            multiprocessing.connection.wait([h.process.sentinel for h in self._helpers], timeout=_TICK_S)
        self.on_tick(self._snapshot())

    def _check_helpers(self, outcome: RunOutcome) -> None:
        for helper in list(self._helpers):
            number, started = int(helper.slot[0]), helper.slot[1]
            if helper.process.exitcode is not None:
                self._helpers.remove(helper)
                if helper.process.exitcode != 0:
                    self._died(helper, number, outcome)
            elif number >= 0 and time.monotonic() - started > self._limit:
                self._kill(helper)
                why = f"ran past the per-trial limit of {self._limit:g} s"
                self._fail(number, why, outcome)
                self._helpers.remove(helper)
                if not self._closed.value and self._left.value > 0:
                    self._helpers.append(self._spawn(helper.replaces))

    def _died(self, helper: _Helper, number: int, outcome: RunOutcome) -> None:
        reason = helper.conn.recv() if helper.conn.poll() else f"exit code {helper.process.exitcode}"
        helper.conn.close()
        if number >= 0:
            self._fail(number, f"its process died ({reason})", outcome)
        replaced = helper.replaces < 1 and not self._closed.value and self._left.value > 0
        message = f"a search process died ({reason}); " + (
            "another took its place" if replaced else "the search went on in fewer processes"
        )
        log.warning(message)
        if message not in outcome.warnings:
            outcome.warnings.append(message)
        if replaced:
            self._helpers.append(self._spawn(helper.replaces + 1))

    def _end_in_flight(self, outcome: RunOutcome, why: str, *, record: bool = True) -> None:
        """No trial starts any more, and the ones running end now (marked failed with `why`)."""
        self._closed.value = True
        for helper in list(self._helpers):
            number = int(helper.slot[0])
            if number >= 0 or helper.process.exitcode is None:
                self._kill(helper)
                self._helpers.remove(helper)
                if number >= 0 and record:
                    self._fail(number, why, outcome)

    def _fail(self, number: int, why: str, outcome: RunOutcome) -> None:
        trial = self.study.get_trials(deepcopy=False)[number]
        if trial.state is TrialState.RUNNING:
            self.study.tell(number, state=TrialState.FAIL)
            ended = EndedTrial(number, _shown(trial.params), why)
            log.warning("%s; it counts as failed", ended)
            outcome.ended.append(ended)

    def _snapshot(self) -> Snapshot:
        trials = self.study.get_trials(deepcopy=False)
        completed = [t for t in trials if t.state is TrialState.COMPLETE]
        durations = [t.duration.total_seconds() for t in completed if t.duration is not None]
        self._limit = self.trial_limit_s(durations)
        now = time.monotonic()
        running = [now - h.slot[1] for h in self._helpers if h.slot[0] >= 0]
        finished = sum(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)
        best = max(completed, key=lambda t: t.value if t.value is not None else float("-inf"), default=None)
        if self.study.direction is optuna.study.StudyDirection.MINIMIZE and completed:
            best = min(completed, key=lambda t: t.value if t.value is not None else float("inf"))
        return Snapshot(finished, durations, running, best, self._limit)

    def _fail_orphans(self) -> None:
        """Trials left running by a helper killed between asking for a trial and naming it."""
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            self.study.tell(trial.number, state=TrialState.FAIL)

    # -- helpers ---------------------------------------------------------------------------------------

    def _spawn(self, replaces: int = 0) -> _Helper:
        index, self._next_index = self._next_index, self._next_index + 1
        slot = self._ctx.Array("d", [_IDLE, 0.0], lock=False)
        parent, child = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=_helper_main,
            args=(self.objective, self.reopen, index, self._left, self._closed, slot, child),
            daemon=False,
        )
        process.start()
        child.close()
        return _Helper(process, parent, slot, replaces)

    def _kill(self, helper: _Helper) -> None:
        if helper.process.exitcode is None:
            helper.process.kill()
        helper.process.join()
        helper.conn.close()

    def _end_all(self) -> None:
        for helper in self._helpers:
            self._kill(helper)
        self._helpers.clear()


def _helper_main(
    objective: Objective,
    reopen: Callable[[int], optuna.Study],
    index: int,
    left: Any,
    closed: Any,
    slot: Any,
    conn: Connection,
) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the worker
    # One BLAS/OpenMP thread, inherited from the worker (see SearchRunner.run): not set again here.
    study = reopen(index)

    def tracked(trial: optuna.Trial) -> float:
        slot[1] = time.monotonic()
        slot[0] = float(trial.number)
        try:
            return objective(trial)
        finally:
            slot[0] = _IDLE

    try:
        while not closed.value and _claim(left):
            study.optimize(tracked, n_trials=1)
    except BaseException as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        at = f" at {where[0].name}:{where[0].lineno}" if where else ""
        with contextlib.suppress(OSError):
            conn.send(f"{type(exc).__name__}: {str(exc)[:300]}{at}")
        log.exception("search process %d failed", index)
        raise SystemExit(1) from None
    finally:
        conn.close()


def _claim(left: Any) -> bool:
    with left.get_lock():
        if left.value <= 0:
            return False
        left.value -= 1
        return True


def _shown(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
