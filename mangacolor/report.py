"""Per-file outcomes of a batch job (colorize, scan, prepare stages) and their summary.

A batch never stops at a bad file: each file ends ``done``, ``skipped`` (output already there),
``copied`` (passed through unchanged) or ``failed`` with a one-line reason; the CLI prints the
summary and exits non-zero when anything failed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("done", "skipped", "copied", "failed")


@dataclass
class FileResult:
    """The outcome of one input file."""

    path: str
    status: str
    reason: str = ""
    outputs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}. Got {self.status!r}")

    def to_json(self) -> dict[str, Any]:
        """JSON-able record: path, status, outputs and (for failures and skips) the reason."""
        return {"path": self.path, "status": self.status, "outputs": list(self.outputs), "reason": self.reason}


class FileLog:
    """Every file's outcome in the order they finished, for ``--json``'s ``files`` list.

    Kept only when asked for (``enabled``): a plain run's memory grows with its failures alone.
    """

    def __init__(self, enabled: bool) -> None:
        self.records: list[dict[str, Any]] | None = [] if enabled else None

    def add(self, result: FileResult) -> None:
        """Record one file's outcome (nothing when disabled)."""
        if self.records is not None:
            self.records.append(result.to_json())

    def to_json(self) -> dict[str, Any]:
        """``{"files": [...]}``, or nothing when disabled."""
        return {} if self.records is None else {"files": self.records}


@dataclass
class BatchReport:
    """Counts of every outcome plus the failures (with reasons); memory grows only with failures."""

    counts: Counter = field(default_factory=Counter)
    failures: list[FileResult] = field(default_factory=list)
    skip_reasons: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)  # what the user should know after the summary

    def add(self, result: FileResult) -> None:
        """Record one file's outcome."""
        self.counts[result.status] += 1
        if result.status == "failed":
            self.failures.append(result)
        elif result.status == "skipped" and result.reason:
            self.skip_reasons[result.reason] += 1

    @property
    def total(self) -> int:
        """Number of files seen."""
        return sum(self.counts.values())

    @property
    def failed(self) -> int:
        """Number of files that failed."""
        return self.counts["failed"]

    def to_json(self) -> dict[str, Any]:
        """JSON-able summary."""
        return {
            "total": self.total,
            **{s: self.counts[s] for s in STATUSES},
            "skip_reasons": dict(self.skip_reasons),
            "failures": [{"path": f.path, "reason": f.reason} for f in self.failures],
            "notes": list(self.notes),
        }
