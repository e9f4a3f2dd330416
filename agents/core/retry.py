"""Bounded exponential backoff for transient failures: pure, so its bounds are unit-tested."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """``max_retries`` tries after the first, waiting base·2ⁿ (capped) with ±``jitter`` spread."""

    max_retries: int = 4
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0
    jitter: float = 0.2

    def delay(self, attempt: int, unit_random: float = 0.5) -> float:
        """Seconds to wait after try number ``attempt`` (0-based); ``unit_random`` is in [0, 1).

        Jitter spreads workers that failed together so they do not all come back at once.
        """
        raw = min(self.max_delay_s, self.base_delay_s * float(2**attempt))
        spread = raw * self.jitter * (2 * unit_random - 1)
        return max(0.0, min(self.max_delay_s, raw + spread))

    def total_budget_s(self) -> float:
        """The longest a request can spend waiting in retries before it is reported failed."""
        return sum(self.delay(n, 0.999999) for n in range(self.max_retries))
