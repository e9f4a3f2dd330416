"""The background re-validation sampler of a worker: read-only, rate-limited.

Each worker validates ``MIGRATOR_REVALIDATE_PER_S`` × (its share of the request partitions)
users per second, so the cluster's load is the configured rate whatever the number of workers,
alternating a recently migrated user and any migrated user. Mismatches are counted by check
(``agents.core.revalidation_tally``), reported with the worker's status, and summed by ``stats``,
``/metrics`` and the dashboard. A mismatch is counted only once confirmed under the user's row
lock (``validate_user``): a batch in flight is not one. It never repairs: ``migrator
resync-redis --ids`` does, on an operator's word.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mode import Service

from agents.core.revalidation_tally import Tally
from agents.jobs.validation import UnknownUser, validate_user
from agents.stores import postgres
from streams.settings import Settings

if TYPE_CHECKING:
    from streams.resources import Resources

log = logging.getLogger(__name__)

_IDLE_S = 1.0


class Revalidator(Service):
    def __init__(
        self,
        settings: Settings,
        resources: Resources,
        share: Callable[[], float],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.resources = resources
        self.share = share  # this worker's part of the request partitions, 0 to 1
        self.tally = Tally()

    def rate(self) -> float:
        return self.settings.revalidate_per_s * self.share()

    @Service.task
    async def _sample(self) -> None:
        await self.resources.ready.wait()
        recent = True
        while not self.should_stop:
            rate = self.rate()
            if rate <= 0:
                await self.sleep(_IDLE_S)
                continue
            await self.sleep(1.0 / rate)
            try:
                await self.sample_one(recent=recent)
            except Exception as exc:  # noqa: BLE001 - a server away: counted, sampled later
                self.tally.errors += 1
                log.debug("re-validation: %s", exc)
            recent = not recent

    async def sample_one(self, *, recent: bool) -> str | None:
        """Validate one migrated user (a recent one or any); the user, if one was found."""
        pool, client = self.resources.pool, self.resources.redis
        if recent:
            users = await postgres.recent_migrated_users(pool, 1)
            user = users[0] if users else None
        else:
            user = await postgres.any_migrated_user(pool)
        if user is None:
            return None
        try:
            report = await validate_user(pool, client, user)
        except UnknownUser:
            return None
        if report.state != "migrated":
            return None  # rolled back since it was picked: nothing to compare
        failed = [(check.name, check.detail) for check in report.checks if not check.ok]
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        self.tally.record(user, failed, recent=recent, at=at)
        if failed:
            log.warning(
                "re-validation: user %s fails %s", user, ", ".join(name for name, _ in failed)
            )
        return user
