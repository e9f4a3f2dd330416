"""The write side of the HTTP API: publishing requests (one, many, a cohort) and run control
(pause, resume, throttle, a run's cancel).

Reads are in ``streams.web.readouts``; a write answers with what the read side says after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agents.core.cohorts import cohort
from agents.core.control_state import apply, cancel_key
from agents.stores import postgres
from agents.stores.runs import record_run, run_summaries
from streams.control_topic import cancel_value, request_ends
from streams.requests_out import encode, new_requests
from streams.trace_context import TraceContext, new_trace
from streams.transactional_writer import TransactionalWriter
from streams.web.inputs import RequestOptions
from streams.web.readouts import Readouts

if TYPE_CHECKING:
    from streams.context import ServiceContext


@dataclass
class Admin:
    context: ServiceContext
    readouts: Readouts
    writer: TransactionalWriter

    @property
    def _pool(self) -> Any:
        return self.context.resources.pool

    async def write_control(self, key: str, value: dict[str, Any]) -> dict[str, Any]:
        """Write a control record; answers once Kafka has it (every worker reads it)."""
        await self.context.control.write(key, value)
        return {
            **self.readouts.control(),
            **apply(self.context.control.current, key, value).as_dict(),
        }

    async def cancel_run(self, run_id: str, *, reason: str | None, by: str) -> dict[str, Any]:
        """Write ``cancel:<run id>`` with the request topic's end offsets now (every worker
        answers the run's requests below them that are not answered yet ``cancelled``); the
        run's figures as the cancel makes them."""
        value = cancel_value(
            run_id=run_id, by=by, reason=reason, before=await request_ends(self.context.settings)
        )
        key = cancel_key(run_id)
        await self.context.control.write(key, value)
        state = apply(self.context.control.current, key, value)
        await self.context.resources.applier()
        [run] = await run_summaries(
            self._pool, now=datetime.now(UTC), run_ids=[run_id], limit=1, cancels=state.cancels
        )
        return {
            "run": run.as_dict(),
            "unanswered": run.remaining,
            "paused": state.paused,
            "before": value["before"],
        }

    async def all_unmigrated(
        self, *, include_rolled_back: bool, include_failed: bool, percent: float | None = None
    ) -> postgres.Selection:
        """Everyone not yet migrated (or the ``percent`` cohort of them), and how many
        rolled-back and failed-for-good users were held out."""
        await self.context.resources.applier()
        selection = await postgres.unmigrated_selection(
            self._pool,
            include_rolled_back=include_rolled_back,
            include_failed=include_failed,
        )
        if percent is None:
            return selection
        return selection._replace(users=cohort(selection.users, percent))

    async def publish_requests(
        self,
        user_ids: Sequence[str],
        action: str,
        options: RequestOptions,
        selection: dict[str, Any] | None = None,
        trace: TraceContext | None = None,
    ) -> list[tuple[str, str]]:
        """Publish one request per user, all or none (``TransactionalWriter``); their request
        ids and trace ids. Each request starts a trace of its own, or continues ``trace`` (the
        HTTP call's ``traceparent``). A run's count grows in a PostgreSQL transaction that
        commits after the Kafka one: a call that publishes nothing adds nothing to its run."""
        now = datetime.now(UTC)
        requests = new_requests(
            user_ids,
            action=action,
            dry_run=options.dry_run,
            requested_by=options.requested_by,
            reason=options.reason,
            now=now,
            run_id=options.run_id,
        )
        records = [encode(request) for request in requests]
        if not records:
            return []
        traces = [trace or new_trace() for _ in requests]
        headers = [t.headers() for t in traces]
        run_id = options.run_id
        if run_id is None:
            await self.writer.write(records, headers=headers)
        else:
            await self.context.resources.applier()
            async with self._pool.acquire() as conn, conn.transaction():

                async def count_in_run() -> None:
                    await record_run(
                        conn,
                        run_id,
                        action=action,
                        count=len(requests),
                        created_by=options.requested_by,
                        selection={**(selection or {}), "count": len(requests), "via": "http-api"},
                        now=now,
                    )

                await self.writer.write(records, before_commit=count_in_run, headers=headers)
        return [
            (str(request.request_id), t.trace_id)
            for request, t in zip(requests, traces, strict=True)
        ]
