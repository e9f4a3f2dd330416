"""verify's fast mirror comparison: the bytes it expects are exactly what the mirror writes for
the same session (``write_sessions`` encodes ``session_document`` whole; verify splices the
steps, encoded once per combination, into the rest)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

from agents.core.catalog import STEPS
from agents.core.documents import session_document
from agents.core.verify_rules import planned_masks, planned_session
from agents.jobs.verify import _document_bytes, _same_document
from agents.stores.redis_mirror import encode_document


def test_the_expected_bytes_are_the_mirrors() -> None:
    for planned, legacy_completed, workspace in ((3, False, 'ws-"ü"\n'), (2**24 - 1, True, None)):
        completed, skipped = planned_masks(planned, legacy_completed)
        session = planned_session(completed, skipped)
        row = {
            "session_id": uuid.uuid4(),
            "user_id": "user-1",
            "workspace_id": workspace,
            "status": session.status,
            "current_step": session.current_step,
            "completion_percentage": session.completion_percentage,
            "steps_completed": session.steps_completed,
            "created_at": datetime(2026, 12, 2, 10, 0, 0, 0, tzinfo=UTC),
            "updated_at": datetime(2026, 12, 2, 10, 0, 0, 123456, tzinfo=UTC),
            "completed": completed,
            "skipped": skipped,
        }
        steps = [
            {"step_number": s.number, "step_key": s.key, "status": st.value, "required": s.required}
            for s, st in zip(STEPS, session.statuses, strict=True)
        ]
        written = encode_document(
            session_document(**{k: row[k] for k in list(row)[:9]}, steps=steps)
        )
        assert _document_bytes(row) == written  # type: ignore[arg-type]
        assert _same_document(row, hashlib.sha1(written).hexdigest())  # type: ignore[arg-type]
        assert not _same_document(row, hashlib.sha1(written + b" ").hexdigest())  # type: ignore[arg-type]
