"""The fault-injection suite (`pytest -m faults`): real server and worker processes killed, stopped,
starved of disk, fed hostile files, raced and flooded; after each scenario the queue is audited and its
figures go to a table printed at the end of the session.

The figures, per scenario (tests assert every one is zero, except the time):

- tasks: task files in the queue at the end.
- lost: an acknowledged task (its submit answered with a task id) with no valid task file in the queue
  (one set aside in corrupt/ counts: it will never run), or any task not ended (queued, running,
  retrying) once the queue had ample time to drain.
- run twice: a task such that
  (a) the workers of two of its attempts (process groups whose stdout is its log) were seen alive at the
      same moment (sampled every 50 ms); or
  (b) its log shows more attempts producing a result ("completed: model ...") than 1 + the re-runs its
      history records with a reason (a transition to retrying: "worker lost", "server restarted"; or a
      clean hand-back to queued): a result beyond the first is allowed only when the one before it was
      lost with its worker or server before it was recorded; or
  (c) its log shows more attempts starting ("attempt N of task ...") than its history records claims
      (transitions to running): a worker ran that no owner claimed; or
  (d) its `attempts` differs from its claims minus its clean hand-backs and its waits for disk space
      (neither counts as an attempt), or an attempt began after a
      retrying transition with no reason: attempts beyond those expected, without a recorded reason; or
  (e) more than one complete model folder holds its model (its `model_<suffix>`, or another whose
      metadata names the task).
- wrong endings: completed without a model folder, cancelled with one (a usable model), cancelled with no
  reason in its history, failed with no classified error.
- orphans: a worker or trial process of the queue (named `mcpt-worker`, stdout on a task's log), or a
  process a killed server had started (forkserver, workers), still alive 15 s after its task ended, its
  server died, or the test ended.
- corrupt left: entries of queue/ outside corrupt/ that are neither the queue's own files nor a plain
  task file that parses as the record its name says (torn or invalid records, links, temporary files
  of dead writers), and model folders published without a readable metadata.json.
- recovery s: the longest time from a restart (or from space freed, or SIGCONT) until the queue began an
  attempt again (a transition to running in any task's history); "-" where nothing was restarted.
"""

from __future__ import annotations

import pytest

from faults.faultfigures import FaultFigures

_FIGURES = pytest.StashKey[FaultFigures]()


@pytest.fixture(scope="session")
def fault_figures(request: pytest.FixtureRequest) -> FaultFigures:
    return request.config.stash.setdefault(_FIGURES, FaultFigures())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    figures = config.stash.get(_FIGURES, None)
    if figures is None or not figures.rows:
        return
    terminalreporter.write_sep("=", "fault suite figures")
    for line in figures.table():
        terminalreporter.write_line(line)
