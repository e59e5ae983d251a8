"""The on-disk Optuna study: a torn journal is repaired, lost trials are failed, a stale lock is removed."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from mcp_trainer.trainers.study import JOURNAL_FILE, open_study, repair_journal


@pytest.fixture(autouse=True)
def quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def objective(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", -1.0, 1.0) ** 2


def study_in(work_dir: Path) -> optuna.Study:
    return open_study(work_dir, study_name="task_x", direction="minimize", seed=0)


def states(study: optuna.Study) -> list[TrialState]:
    return [t.state for t in study.get_trials(deepcopy=False)]


def test_repair_of_a_missing_or_empty_journal_removes_nothing(tmp_path: Path) -> None:
    journal = tmp_path / JOURNAL_FILE
    assert repair_journal(journal) == 0
    assert not journal.exists()
    journal.write_bytes(b"")
    assert repair_journal(journal) == 0
    assert journal.read_bytes() == b""


def test_repair_of_an_intact_journal_changes_nothing(tmp_path: Path) -> None:
    journal = tmp_path / JOURNAL_FILE
    journal.write_bytes(b'{"a": 1}\n{"b": 2}\n')
    assert repair_journal(journal) == 0
    assert journal.read_bytes() == b'{"a": 1}\n{"b": 2}\n'


@pytest.mark.parametrize("tail_size", [7, 200_000])
def test_repair_cuts_a_torn_last_line_back_to_the_last_newline(tmp_path: Path, tail_size: int) -> None:
    journal = tmp_path / JOURNAL_FILE
    whole = b'{"a": 1}\n{"b": 2}\n'
    journal.write_bytes(whole + b"x" * tail_size)
    assert repair_journal(journal) == tail_size
    assert journal.read_bytes() == whole


def test_repair_of_a_journal_without_any_newline_empties_it(tmp_path: Path) -> None:
    journal = tmp_path / JOURNAL_FILE
    journal.write_bytes(b'{"op_code": 0, "worker')
    assert repair_journal(journal) == 22
    assert journal.read_bytes() == b""


def test_a_study_with_a_torn_last_line_reopens_with_its_finished_trials(tmp_path: Path) -> None:
    study = study_in(tmp_path)
    study.optimize(objective, n_trials=3)
    best = study.best_value
    journal = tmp_path / JOURNAL_FILE
    intact = journal.read_bytes()
    torn = b'{"op_code": 4, "worker_id": "dead-worker", "study_id": 0, "datetime_st'
    with open(journal, "ab") as f:
        f.write(torn)

    reopened = study_in(tmp_path)

    repaired = journal.read_bytes()
    assert repaired.startswith(intact)  # reopening may append records, after the cut
    assert torn not in repaired
    assert states(reopened) == [TrialState.COMPLETE] * 3
    assert reopened.best_value == best
    reopened.optimize(objective, n_trials=1)
    assert states(study_in(tmp_path)) == [TrialState.COMPLETE] * 4


def test_a_trial_left_running_is_marked_failed_when_the_study_reopens(tmp_path: Path) -> None:
    study = study_in(tmp_path)
    study.optimize(objective, n_trials=2)
    lost = study.ask()
    lost.suggest_float("x", -1.0, 1.0)  # the worker died here, never telling
    assert states(study)[-1] is TrialState.RUNNING

    reopened = study_in(tmp_path)

    assert states(reopened) == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL]
    assert study_in(tmp_path).trials[lost.number].state is TrialState.FAIL


@pytest.mark.parametrize("kind", ["symlink", "dangling_symlink", "file"])
def test_a_stale_journal_lock_is_removed_and_the_study_opens(tmp_path: Path, kind: str) -> None:
    study_in(tmp_path).optimize(objective, n_trials=1)
    lock = tmp_path / f"{JOURNAL_FILE}.lock"
    if kind == "symlink":
        lock.symlink_to(tmp_path / JOURNAL_FILE)
    elif kind == "dangling_symlink":
        lock.symlink_to(tmp_path / "gone")
    else:
        lock.write_text("left by a killed worker")

    reopened = study_in(tmp_path)

    assert not lock.exists() and not lock.is_symlink()
    assert states(reopened) == [TrialState.COMPLETE]
    reopened.optimize(objective, n_trials=1)
    assert len(reopened.trials) == 2


def test_open_study_creates_the_work_directory_and_journal(tmp_path: Path) -> None:
    work = tmp_path / "work" / "task_x"
    study = study_in(work)
    study.optimize(objective, n_trials=1)
    assert (work / JOURNAL_FILE).stat().st_size > 0
    assert study.direction is optuna.study.StudyDirection.MINIMIZE
