"""``migrator seed-legacy``: realistic legacy rows for demos, tests and benchmarks.

The generator is seeded and pure (same arguments, same rows), so a benchmark or a failing test can
be reproduced exactly. Rows are written with COPY into a temporary table and then inserted with
ON CONFLICT DO NOTHING, so seeding twice adds nothing and 100,000 rows take seconds.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from agents.core.catalog import STEPS
from agents.stores import postgres

LEGACY_ORDER: tuple[str, ...] = tuple(dict.fromkeys(step.legacy_step for step in STEPS))
_REQUIRED_LEGACY = tuple(dict.fromkeys(step.legacy_step for step in STEPS if step.required))
_OPTIONAL_ONLY = tuple(name for name in LEGACY_ORDER if name not in _REQUIRED_LEGACY)

_COMPANIES = (
    "Acme Analytics",
    "Müller & Söhne GmbH",
    "株式会社さくらデータ",
    "Café Olé Ltd",
    "Zoë's Ünicorn Labs",
    "Ørsted Consulting",
    "Nguyễn Trading",
    "São Paulo Growth Co",
    "Œuvre Studio",
    "Δέλτα Systems",
    "Northwind",
    "Łódź Logistics",
    "Émile & Cie",
    "Smörgås AB",
    "Tiefgrün AG",
)
_INDUSTRIES = {
    "software": ("devtools", "saas", "security"),
    "retail": ("fashion", "groceries", "électronique"),
    "finance": ("payments", "lending", "insurance"),
    "health": ("clinics", "pharma", "wellness"),
    "media": ("publishing", "streaming", "podcasts 🎙️"),
}
_SIZES = ("1-10", "11-50", "51-200", "201-1000", "1000+")
_GOALS = ("grow revenue", "reduce churn", "launch in new markets", "améliorer la marque", "hire")
_METRICS = ("MRR", "NPS", "CAC", "activation rate", "time to value")
_AUDIENCES = ("SMB owners", "enterprise IT", "developers", "parents", "étudiants")
_SEGMENTS = ("north america", "europe", "apac", "latam", "self-serve", "enterprise")
_VOICES = ("friendly", "formal", "playful", "technical", "warm and direct ☀️")
_ASSETS = ("logo.svg", "palette.json", "fonts.zip", "guidelines.pdf")
_COMPETITORS = ("Globex", "Initech", "Umbrella", "Hooli", "Pied Piper")
_INTEGRATIONS = ("salesforce", "hubspot", "slack", "google_analytics", "shopify")

PROBLEM_KINDS = ("unknown_step", "migrated_without_session", "wrong_answer_type", "bad_status")


@dataclass(frozen=True)
class SeedOptions:
    users: int
    prefix: str = "user-"
    seed: int = 42
    problem_ratio: float = 0.0  # share of rows deliberately broken (the --with-problems flag)
    start: int = 0


def generate(options: SeedOptions) -> Iterator[tuple[Any, ...]]:
    """Rows as tuples in the column order of ``COLUMNS``."""
    rng = random.Random(options.seed)
    epoch = datetime(2026, 1, 1, tzinfo=UTC)
    for number in range(options.start, options.start + options.users):
        user_id = f"{options.prefix}{number:07d}"
        roll = rng.random()
        status = "not_started" if roll < 0.15 else ("in_progress" if roll < 0.6 else "completed")
        steps = _steps_for(rng, status)
        row: dict[str, Any] = {
            "user_id": user_id,
            "workspace_id": None if rng.random() < 0.1 else f"ws-{rng.randrange(1, 50_000):05d}",
            "status": status,
            "current_step": _current_step(steps, status),
            "completed_steps": steps,
            "answers": _answers(rng, steps),
            "updated_at": epoch
            + timedelta(
                seconds=rng.randrange(0, 300 * 86_400), microseconds=rng.randrange(0, 1_000_000)
            ),
        }
        if options.problem_ratio and rng.random() < options.problem_ratio:
            _break(rng, row)
        yield tuple(row[column] for column in COLUMNS)


COLUMNS = (
    "user_id",
    "workspace_id",
    "status",
    "current_step",
    "completed_steps",
    "answers",
    "updated_at",
)


def _steps_for(rng: random.Random, status: str) -> list[str]:
    if status == "not_started":
        return []
    if status == "completed":
        steps = list(_REQUIRED_LEGACY)
        steps += [name for name in _OPTIONAL_ONLY if rng.random() < 0.5]
    else:
        steps = list(LEGACY_ORDER[: rng.randrange(1, len(LEGACY_ORDER))])
    if steps and rng.random() < 0.05:
        steps.append(rng.choice(steps))  # the legacy system sometimes recorded a step twice
    return steps


def _current_step(steps: list[str], status: str) -> str | None:
    if status == "completed":
        return None
    remaining = [name for name in LEGACY_ORDER if name not in steps]
    return remaining[0] if remaining else None


def _answers(rng: random.Random, steps: list[str]) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    done = set(steps)
    if "company" in done:
        answers["company_name"] = rng.choice(_COMPANIES)
        if rng.random() < 0.9:
            answers["company_size"] = rng.choice(_SIZES)
    if "industry" in done:
        industry = rng.choice(sorted(_INDUSTRIES))
        answers["industry"] = industry
        if rng.random() < 0.7:
            answers["sub_industry"] = rng.choice(_INDUSTRIES[industry])
    if "goals" in done:
        answers["goals"] = rng.sample(_GOALS, rng.randrange(1, 4))
        if rng.random() < 0.6:
            answers["success_metrics"] = rng.sample(_METRICS, rng.randrange(1, 3))
    if "audience" in done:
        answers["audience"] = rng.choice(_AUDIENCES)
        if rng.random() < 0.5:
            answers["segments"] = rng.sample(_SEGMENTS, rng.randrange(1, 4))
    if "brand" in done:
        answers["brand_voice"] = rng.choice(_VOICES)
        if rng.random() < 0.4:
            answers["brand_assets"] = rng.sample(_ASSETS, rng.randrange(1, 3))
    if "competitors" in done:
        answers["competitors"] = rng.sample(_COMPETITORS, rng.randrange(0, 4))
    if "integrations" in done:
        answers["integrations"] = rng.sample(_INTEGRATIONS, rng.randrange(1, 4))
    return answers


def _break(rng: random.Random, row: dict[str, Any]) -> None:
    kind = rng.choice(PROBLEM_KINDS)
    if kind == "unknown_step":
        row["completed_steps"] = [*row["completed_steps"], "legacy_wizard"]
    elif kind == "migrated_without_session":
        row["status"] = "migrated"
    elif kind == "wrong_answer_type":
        row["answers"] = {**row["answers"], "goals": "grow revenue"}
    else:
        row["status"] = "paused"


async def write_rows(
    pool: postgres.Pool,
    rows: Iterator[tuple[Any, ...]],
    *,
    chunk: int = 20_000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Insert rows that are not there yet; return how many were inserted."""
    inserted = 0
    async with pool.acquire() as conn:
        while True:
            batch = [row for _, row in zip(range(chunk), rows, strict=False)]
            if not batch:
                return inserted
            inserted += await postgres.insert_new_legacy_rows(conn, batch, COLUMNS)
            if progress is not None:
                progress(inserted)
