"""The 24 new onboarding steps and the legacy step each comes from (contract §5)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepDef:
    number: int
    key: str
    legacy_step: str
    required: bool


_TABLE = (
    ("account", "account_created", True),
    ("account", "email_verified", True),
    ("profile", "profile_basics", True),
    ("profile", "profile_photo", False),
    ("workspace", "workspace_created", True),
    ("workspace", "workspace_settings", False),
    ("company", "company_details", True),
    ("company", "company_size", True),
    ("industry", "industry", True),
    ("industry", "sub_industry", False),
    ("goals", "primary_goals", True),
    ("goals", "success_metrics", False),
    ("audience", "target_audience", True),
    ("audience", "customer_segments", False),
    ("brand", "brand_voice", True),
    ("brand", "brand_assets", False),
    ("competitors", "competitors", False),
    ("competitors", "positioning", False),
    ("integrations", "connect_data_sources", False),
    ("integrations", "connect_channels", False),
    ("team", "invite_team", False),
    ("team", "roles_permissions", False),
    ("review", "review_context", True),
    ("review", "finalize", True),
)

STEPS: tuple[StepDef, ...] = tuple(
    StepDef(number, key, legacy, required)
    for number, (legacy, key, required) in enumerate(_TABLE, start=1)
)
STEPS_TOTAL = len(STEPS)
LEGACY_STEPS: frozenset[str] = frozenset(step.legacy_step for step in STEPS)
REQUIRED_COUNT = sum(step.required for step in STEPS)
