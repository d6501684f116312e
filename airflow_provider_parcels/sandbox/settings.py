"""Run-time settings of the sandbox and the fault injector they drive."""

from __future__ import annotations

import dataclasses
import random
import threading
from dataclasses import dataclass

#: Fault kinds in the order their fractions are stacked for one draw.
FAULT_KINDS: tuple[str, ...] = ("429", "503", "timeout", "badjson", "reset")
RATELIMIT_STYLES: tuple[str, ...] = ("retry-after", "http-date", "reset-epoch", "reset-epoch-ms", "reset-seconds")


@dataclass(frozen=True)
class SandboxSettings:
    """Settings of a running sandbox (all of them can change at run time).

    :param rpm: per-minute quota for every key that names no plan; None for no quota.
    :param latency_per_item: seconds slept per tracked item before answering a tracking call.
    :param faults: fault spec, e.g. ``"503=0.1,timeout=0.05,badjson=0.02,reset=0.01,429=0.05"``.
    :param seed: seed of the fault generator; None for an unpredictable sequence.
    :param ratelimit_style: how a refusal says when to come back, one of :data:`RATELIMIT_STYLES`.
    :param timeout_delay: seconds a ``timeout`` fault sleeps before answering.
    :param window_seconds: length of the quota window (60: a per-minute quota). Tests and
        benchmarks shorten it to see an enforced limit without waiting minutes; the quota then
        counts per window, not per minute.
    """

    rpm: int | None = None
    latency_per_item: float = 0.0
    faults: str = ""
    seed: int | None = None
    ratelimit_style: str = "retry-after"
    timeout_delay: float = 5.0
    window_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.rpm is not None and (isinstance(self.rpm, bool) or not isinstance(self.rpm, int)):
            raise ValueError(f"rpm must be an integer or null, not {self.rpm!r}")
        if self.rpm is not None and self.rpm <= 0:
            object.__setattr__(self, "rpm", None)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ValueError(f"seed must be an integer or null, not {self.seed!r}")
        if isinstance(self.window_seconds, bool) or not isinstance(self.window_seconds, (int, float)) \
                or self.window_seconds <= 0:
            raise ValueError(f"window_seconds must be a number > 0, not {self.window_seconds!r}")
        for name in ("latency_per_item", "timeout_delay", "window_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, not {value!r}")
            object.__setattr__(self, name, float(value))
        if self.ratelimit_style not in RATELIMIT_STYLES:
            raise ValueError(f"ratelimit_style must be one of {', '.join(RATELIMIT_STYLES)}")
        parse_faults(self.faults)

    def replace(self, **changes: object) -> SandboxSettings:
        """A copy with ``changes`` applied; unknown names raise ``ValueError``."""
        known = {field.name for field in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, object]:
        """The settings as a JSON-ready dict."""
        return dataclasses.asdict(self)


def parse_faults(spec: str | None) -> dict[str, float]:
    """Parse ``"503=0.1,reset=0.01"`` into fractions; the fractions must add up to at most 1.

    :param spec: the fault spec; empty or None means no faults.
    """
    if spec is None:
        return {}
    if not isinstance(spec, str):
        raise ValueError("faults must be a string such as '503=0.1,reset=0.01'")
    fractions: dict[str, float] = {}
    for part in filter(None, (piece.strip() for piece in spec.split(","))):
        kind, sep, value = part.partition("=")
        kind = kind.strip().lower()
        if not sep or kind not in FAULT_KINDS:
            raise ValueError(f"bad fault {part!r}: use KIND=FRACTION with KIND in {', '.join(FAULT_KINDS)}")
        try:
            fraction = float(value)
        except ValueError:
            raise ValueError(f"bad fault fraction in {part!r}") from None
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fault fraction out of [0, 1] in {part!r}")
        fractions[kind] = fractions.get(kind, 0.0) + fraction
    if sum(fractions.values()) > 1.0 + 1e-9:
        raise ValueError("fault fractions add up to more than 1")
    return fractions


class FaultInjector:
    """Draws at most one fault per API request from a seeded generator (thread-safe).

    :param spec: fault spec (see :func:`parse_faults`).
    :param seed: generator seed, None for an unpredictable one.
    """

    def __init__(self, spec: str = "", seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._fractions: dict[str, float] = {}
        self._rng = random.Random(seed)
        self.configure(spec, seed)

    def configure(self, spec: str, seed: int | None) -> None:
        """Set the spec and restart the generator from ``seed``."""
        fractions = parse_faults(spec)
        with self._lock:
            self._fractions = fractions
            self._rng = random.Random(seed)

    def draw(self) -> str | None:
        """A fault kind for this request, or None."""
        with self._lock:
            if not self._fractions:
                return None
            roll = self._rng.random()
        bound = 0.0
        for kind in FAULT_KINDS:
            bound += self._fractions.get(kind, 0.0)
            if roll < bound:
                return kind
        return None
