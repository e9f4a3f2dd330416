"""The open answers that also name users (failures, revalidation, audit, stats), with or
without the ids: pure, so what is withheld is a unit test.

Aggregates stay open: counts by code, by check and by kind are what a status page and an
on-call engineer need, and they name nobody. The ids name people, so they go only to a caller
with the read (or admin) token (``inputs.may_read_user_ids``). Without it, each id field is
null, not empty, and ``user_ids_withheld`` is true: a client never mistakes a withheld list for
"no user failed". The rest of a row stays (a drift's changed columns and time, an audit
finding's partition, offset and request id), since none of it tells who the user is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def failures(rows: Sequence[Mapping[str, Any]], *, shown: bool) -> dict[str, Any]:
    """``GET failures``: per error code, the sample of user ids only when ``shown``."""
    listed = [dict(row) if shown else {**row, "sample_user_ids": None} for row in rows]
    return {"failures": listed, "user_ids_withheld": not shown}


def revalidation(found: Mapping[str, Any], *, shown: bool) -> dict[str, Any]:
    """``GET revalidation`` and ``stats.revalidation``: the latest ids by check, and who
    drifted, only when ``shown``."""
    if shown:
        return {**found, "user_ids_withheld": False}
    return {
        **found,
        "latest_user_ids": None,
        "drift": [{**row, "user_id": None} for row in found.get("drift", [])],
        "user_ids_withheld": True,
    }


def audit(found: Mapping[str, Any], *, shown: bool) -> dict[str, Any]:
    """``GET audit``: each finding's user id only when ``shown``."""
    if shown:
        return {**found, "user_ids_withheld": False}
    findings = [{**finding, "user_id": None} for finding in found.get("findings", [])]
    return {**found, "findings": findings, "user_ids_withheld": True}
