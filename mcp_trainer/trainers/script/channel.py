"""What a script reports, from its report pipe or its printed `@@mcp-trainer {...}` lines, applied to the
task's progress: percent, phase, message, step of total, the latest value of each metric, and artifacts.

A report is one JSON object with a `type`: `progress` (`percent`, `phase`, `message`, `step`, `total`),
`metric` (`name`, `value`) or `artifact` (`path`). One that is not understood is logged, and the first
such is shown in the task's warnings (the script goes on). Until the script reports anything, the last
line it printed is the status's message, so that a script that knows nothing of the helper still shows
where it is. Progress updates are coalesced by `WorkerContext.report` (about four a second); the last of a
burst is sent once the limit allows (`flush`), so the status never stays behind what the script said.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

from mcp_trainer.report import LINE_PREFIX
from mcp_trainer.trainers.base import WorkerContext

__all__ = ["MAX_ARTIFACTS", "MAX_METRICS", "Reports"]

log = logging.getLogger(__name__)
MAX_METRICS = 100
MAX_ARTIFACTS = 100
_MAX_PHASE = 60
_MAX_MESSAGE = 300
_MAX_PATH = 4096


class BadReport(ValueError):
    """A report line that is not one of the documented reports."""


class Reports:
    """The script's reports so far, kept and shown in the task's progress."""

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.metrics: dict[str, float] = {}
        self.artifacts: list[str] = []
        self.heard = False  # whether the script reported anything itself
        self._started = time.monotonic()
        self._warned: set[str] = set()
        self._unsent = False  # a report held back by the rate limit

    def output_line(self, text: str) -> None:
        """A line the script printed on stdout: a printed report, or (until it reports) its message."""
        if text.startswith(LINE_PREFIX):
            self.report_line(text[len(LINE_PREFIX) :])
        elif not self.heard and text.strip():
            self._report(message=text.strip()[-_MAX_MESSAGE:])

    def report_line(self, text: str) -> None:
        """One JSON report (a line of the pipe, or a printed report without its prefix)."""
        try:
            report = json.loads(text)
            if not isinstance(report, dict):
                raise BadReport("a report is a JSON object")
            self._apply(report)
        except (ValueError, BadReport) as exc:
            why = str(exc) if isinstance(exc, BadReport) else "it is not JSON"
            log.warning("a report from the script was not understood (%s): %s", why, text[:500])
            self._warn_once(
                "report", f"a report from the script was not understood ({why}); the task log has each"
            )

    def _apply(self, report: dict[str, Any]) -> None:
        kind = report.get("type")
        self.heard = True
        if kind == "progress":
            self._progress(report)
        elif kind == "metric":
            self._metric(report.get("name"), report.get("value"))
        elif kind == "artifact":
            self._artifact(report.get("path"))
        else:
            raise BadReport(f"type {str(kind)[:40]!r} is none of progress, metric, artifact")

    def _progress(self, report: dict[str, Any]) -> None:
        fields: dict[str, Any] = {}
        percent = report.get("percent")
        step, total = _count(report, "step"), _count(report, "total")
        if percent is None and step is not None and total:
            percent = 100.0 * step / total
        if percent is not None:
            fields["percent"] = min(max(_finite(percent, "percent"), 0.0), 100.0)
            fields["eta_s"] = self._eta(fields["percent"])
        if report.get("phase") is not None:
            fields["phase"] = _text(report["phase"], "phase")[:_MAX_PHASE]
        message = None if report.get("message") is None else _text(report["message"], "message")
        if step is not None:
            counted = f"step {step}" + (f" of {total}" if total else "")
            message = f"{message} ({counted})" if message else counted
        if message is not None:
            fields["message"] = message[:_MAX_MESSAGE]
        self._report(**fields)

    def _eta(self, percent: float) -> float | None:
        if not 0 < percent < 100:
            return 0.0 if percent >= 100 else None
        elapsed = time.monotonic() - self._started
        return round(elapsed * (100 - percent) / percent, 1)

    def _metric(self, name: object, value: object) -> None:
        if not isinstance(name, str) or not 0 < len(name) <= 100:
            raise BadReport("a metric's name is text of 1 to 100 characters")
        number = _finite(value, f"metric {name}") if _is_number(value) else None
        if number is None:
            self._warn_once(
                f"metric {name}", f"metric {name} was not a finite number ({str(value)[:40]}): left out"
            )
            return
        if name not in self.metrics and len(self.metrics) >= MAX_METRICS:
            self._warn_once(
                "metrics", f"the script reported more than {MAX_METRICS} metrics: the rest are left out"
            )
            return
        self.metrics[name] = number
        self._report(metrics=dict(self.metrics))

    def _artifact(self, path: object) -> None:
        if not isinstance(path, str) or not 0 < len(path) <= _MAX_PATH:
            raise BadReport("an artifact's path is text")
        if path in self.artifacts:
            return
        if len(self.artifacts) >= MAX_ARTIFACTS:
            self._warn_once(
                "artifacts", f"the script named more than {MAX_ARTIFACTS} artifacts: the rest are left out"
            )
            return
        self.artifacts.append(path)

    def flush(self) -> None:
        """Send the progress held back by the rate limit, if the limit allows it now."""
        if self._unsent:
            self._report()

    def _report(self, **fields: Any) -> None:
        before = self.ctx.progress.updated_at
        self.ctx.report(**fields)
        self._unsent = self.ctx.progress.updated_at == before  # set only when it was sent

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.ctx.warn(message)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _finite(value: object, what: str) -> float:
    if not _is_number(value):
        raise BadReport(f"{what} is not a finite number")
    return float(value)  # type: ignore[arg-type]  # checked just above


def _count(report: dict[str, Any], name: str) -> int | None:
    value = report.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadReport(f"{name} is not a whole number, 0 or more")
    return value


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise BadReport(f"{what} is not text")
    return value
