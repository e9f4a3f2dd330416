"""What the background re-validation found: pure bookkeeping, so its counts are unit-tested.

Every sampled user is validated with the named checks of ``migrator validate``; a failed check
counts as a mismatch under its name, with the latest offending user ids. The drift check
(``legacy_row_unchanged_since_migration``) is kept apart as well: it is the legacy system's
doing, not ours, and an operator acts on it differently.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

DRIFT_CHECK = "legacy_row_unchanged_since_migration"
_LATEST = 10


@dataclass
class Tally:
    sampled: int = 0
    sampled_recent: int = 0
    users_with_mismatch: int = 0
    mismatches: dict[str, int] = field(default_factory=dict)
    latest: dict[str, deque[str]] = field(default_factory=dict)
    drift: deque[dict[str, str]] = field(default_factory=lambda: deque(maxlen=_LATEST))
    errors: int = 0
    last_at: str | None = None

    def record(
        self, user_id: str, failed: Sequence[tuple[str, str]], *, recent: bool, at: str
    ) -> None:
        """One user validated; ``failed`` holds ``(check, detail)`` of its failed checks."""
        self.sampled += 1
        self.sampled_recent += recent
        self.last_at = at
        if failed:
            self.users_with_mismatch += 1
        for check, detail in failed:
            self.mismatches[check] = self.mismatches.get(check, 0) + 1
            latest = self.latest.setdefault(check, deque(maxlen=_LATEST))
            if user_id in latest:
                latest.remove(user_id)
            latest.appendleft(user_id)
            if check == DRIFT_CHECK:
                self.drift.appendleft({"user_id": user_id, "detail": detail, "at": at})

    def as_dict(self) -> dict[str, Any]:
        return {
            "sampled": self.sampled,
            "sampled_recent": self.sampled_recent,
            "users_with_mismatch": self.users_with_mismatch,
            "mismatches": dict(sorted(self.mismatches.items())),
            "latest_user_ids": {k: list(v) for k, v in sorted(self.latest.items())},
            "drift": list(self.drift),
            "errors": self.errors,
            "last_at": self.last_at,
        }


def combine(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Every worker's tally as one (sums; latest ids and drift merged, newest first)."""
    out: dict[str, Any] = {
        "sampled": 0,
        "sampled_recent": 0,
        "users_with_mismatch": 0,
        "mismatches": {},
        "latest_user_ids": {},
        "drift": [],
        "errors": 0,
        "last_at": None,
    }
    for report in reports:
        for key in ("sampled", "sampled_recent", "users_with_mismatch", "errors"):
            out[key] += int(report.get(key, 0))
        for check, count in report.get("mismatches", {}).items():
            out["mismatches"][check] = out["mismatches"].get(check, 0) + int(count)
        for check, users in report.get("latest_user_ids", {}).items():
            merged = out["latest_user_ids"].setdefault(check, [])
            merged += [u for u in users if u not in merged]
        out["drift"] += report.get("drift", [])
        last = report.get("last_at")
        if last is not None and (out["last_at"] is None or last > out["last_at"]):
            out["last_at"] = last
    out["drift"] = sorted(out["drift"], key=lambda d: d.get("at", ""), reverse=True)[:_LATEST]
    out["latest_user_ids"] = {k: v[:_LATEST] for k, v in sorted(out["latest_user_ids"].items())}
    out["mismatches"] = dict(sorted(out["mismatches"].items()))
    return out
