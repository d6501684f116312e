"""The compact summaries the operators return as XCom (counts, never payloads)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_parcels.models import TrackingResult

#: How many failed parcels or orders a summary and an error message list by name.
SHOWN_ERRORS = 10


@dataclass
class TrackingSummary:
    """
    Counts of one tracking run, built chunk by chunk.

    :param provider: the API.
    """

    provider: str
    parcels: int = 0
    by_status: Counter = field(default_factory=Counter)
    error_codes: Counter = field(default_factory=Counter)
    first_errors: list[dict[str, str]] = field(default_factory=list)

    def add(self, results: Iterable[TrackingResult]) -> None:
        for result in results:
            self.parcels += 1
            self.by_status[result.status.value] += 1
            if result.error is not None:
                self.error_codes[result.error.code] += 1
                if len(self.first_errors) < SHOWN_ERRORS:
                    self.first_errors.append(
                        {
                            "tracking_number": result.tracking_number,
                            "carrier": result.carrier,
                            "code": result.error.code,
                            "message": result.error.message,
                        }
                    )

    @property
    def errors(self) -> int:
        return sum(self.error_codes.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "parcels": self.parcels,
            "by_status": dict(sorted(self.by_status.items())),
            "errors": self.errors,
            "error_codes": dict(sorted(self.error_codes.items())),
            "first_errors": list(self.first_errors),
        }

    def failure_message(self) -> str:
        shown = "; ".join(f"{e['tracking_number']!r} ({e['carrier']}): {e['code']}: {e['message']}"
                          for e in self.first_errors[:5])
        return f"{self.errors} of {self.parcels} parcels failed on {self.provider}: {shown}"


@dataclass
class CreateSummary:
    """
    Counts of one create/upsert run: what was created, updated, already there or failed.

    :param target: what was written to (``parcellab orders``, ``trackingmore trackings``).
    """

    target: str
    counts: Counter = field(default_factory=Counter)
    failures: list[dict[str, str]] = field(default_factory=list)

    def add(self, key: str, outcome: str, message: str | None = None) -> None:
        self.counts[outcome] += 1
        if outcome == "error" and len(self.failures) < SHOWN_ERRORS:
            self.failures.append({"key": key, "message": message or ""})

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "total": sum(self.counts.values()),
            "created": self.counts["created"],
            "updated": self.counts["updated"],
            # parcelLab: a retried PUT found the order, created by an earlier attempt or before it
            "created_or_updated": self.counts["created_or_updated"],
            "unchanged": self.counts["exists"],
            "failed": self.counts["error"],
            "first_failures": list(self.failures),
        }

    def failure_message(self) -> str:
        shown = "; ".join(f"{f['key']!r}: {f['message']}" for f in self.failures[:5])
        return f"{self.counts['error']} of {sum(self.counts.values())} failed writing {self.target}: {shown}"
