"""The Business Context Manifest (BCM), version 1: built only from the legacy row.

Nothing is invented: a missing answer is null. The manifest holds no session id and no clock
reading, so its checksum is a pure function of the legacy row and can be recomputed at any time.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from schemas.canonical import canonical_json, sha256_hex
from schemas.legacy import LegacyRow
from schemas.rows import JsonText

MANIFEST_VERSION = 1

_TEXT_ANSWERS = (
    "company_name",
    "company_size",
    "industry",
    "sub_industry",
    "audience",
    "brand_voice",
)
_LIST_ANSWERS = (
    "goals",
    "success_metrics",
    "segments",
    "brand_assets",
    "competitors",
    "integrations",
)


class InvalidAnswers(ValueError):
    """An answer has a type the legacy system is not supposed to write."""


def check_answers(row: LegacyRow) -> dict[str, Any]:
    """The known answers (missing ones as None); ``InvalidAnswers`` if one has a wrong type."""
    answers = row.answers
    problems = []
    for key in _TEXT_ANSWERS:
        value = answers.get(key)
        if value is not None and not isinstance(value, str):
            problems.append(f"{key} must be text, not {type(value).__name__}")
    for key in _LIST_ANSWERS:
        value = answers.get(key)
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(v, str) for v in value)
        ):
            problems.append(f"{key} must be a list of text")
    if problems:
        raise InvalidAnswers("; ".join(problems))
    return {key: answers.get(key) for key in (*_TEXT_ANSWERS, *_LIST_ANSWERS)}


def build_manifest(row: LegacyRow, checked: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest of ``row``; ``checked``: what ``check_answers(row)`` returned, when the
    caller has it already (the planner checks every row before it builds a manifest)."""
    a = check_answers(row) if checked is None else checked
    return {
        "manifest_version": MANIFEST_VERSION,
        "user_id": row.user_id,
        "workspace_id": row.workspace_id,
        "company": {
            "name": a["company_name"],
            "size": a["company_size"],
            "industry": a["industry"],
            "sub_industry": a["sub_industry"],
        },
        "goals": {"primary": a["goals"], "success_metrics": a["success_metrics"]},
        "audience": {"target": a["audience"], "segments": a["segments"]},
        "brand": {"voice": a["brand_voice"], "assets": a["brand_assets"]},
        "competitors": a["competitors"],
        "integrations": a["integrations"],
        "source": {
            "system": "legacy_onboarding_status",
            "legacy_updated_at": row.updated_at.isoformat(timespec="microseconds"),
        },
    }


def manifest_checksum(manifest: dict[str, Any]) -> str:
    """SHA-256 hex of the manifest's canonical JSON (contract §6)."""
    return sha256_hex(manifest)


def encoded_with_checksum_and_tokens(manifest: dict[str, Any]) -> tuple[JsonText, str, int]:
    """The manifest's canonical JSON, its ``manifest_checksum`` and its ``token_estimate``, from
    one encoding: the planner needs all three for every completed user (the canonical text is
    what PostgreSQL stores; jsonb keeps the value, not the key order)."""
    canonical = canonical_json(manifest)
    return JsonText(canonical), hashlib.sha256(canonical).hexdigest(), _tokens(canonical)


def token_estimate(manifest: dict[str, Any]) -> int:
    """ceil(characters of the canonical JSON / 4).

    Four characters per token is the usual rule of thumb for English text with LLM tokenizers;
    counting characters (not bytes) of the canonical form makes it deterministic and cheap.
    """
    return _tokens(canonical_json(manifest))


def _tokens(canonical: bytes) -> int:
    return math.ceil(len(canonical.decode("utf-8")) / 4)
