"""The figures of the fault suite: one row per scenario, printed as a table at the end of the session
(see conftest.py for what each figure means)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from faults.faultkit import Audit

__all__ = ["FaultFigures", "Figures"]


@dataclass
class Figures:
    scenario: str
    tasks: int
    lost: int
    run_twice: int
    wrong_endings: int
    orphans: int
    corrupt_left: int
    recovery_s: float | None


class FaultFigures:
    """The session's figures, one row per scenario."""

    def __init__(self) -> None:
        self.rows: list[Figures] = []

    def record(
        self, scenario: str, found: Audit, orphans: list[str], recovery_s: float | None = None
    ) -> None:
        self.rows.append(
            Figures(
                scenario,
                found.tasks,
                len(found.lost),
                len(found.run_twice),
                len(found.wrong_endings),
                len(orphans),
                len(found.corrupt_left),
                recovery_s,
            )
        )

    def table(self) -> list[str]:
        """The rows as aligned text lines, a header first, in the order of the scenarios' numbers."""
        header = (
            "scenario",
            "tasks",
            "lost",
            "run twice",
            "wrong end",
            "orphans",
            "corrupt left",
            "recovery s",
        )
        ordered = sorted(
            self.rows, key=lambda f: int(m.group()) if (m := re.match(r"\d+", f.scenario)) else 0
        )
        rows = [
            (
                f.scenario,
                *(str(n) for n in (f.tasks, f.lost, f.run_twice, f.wrong_endings, f.orphans, f.corrupt_left)),
                "-" if f.recovery_s is None else f"{f.recovery_s:.2f}",
            )
            for f in ordered
        ]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        return [
            " | ".join([r[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True))])
            for r in [header, *rows]
        ]
