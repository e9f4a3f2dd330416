"""HTTP on the Faust web server (contract §9): stats, progress, health, validate, admin, dashboard.

Who may read what: aggregates (stats, progress, health, workers, runs, control, metrics, the
dashboard page) are open; what names a user or tells one user's state (validate, a run's
report) needs the read or the admin token, and the open answers that list users (failures,
revalidation, audit, stats) include the ids only for such a token (``streams.web.user_ids``).

Views are module-level classes over one worker's ``Readouts`` (the read model) and ``Admin``
(the writes); ``register_views`` binds each view to them (a subclass per app, so two apps in one
process never share a route).

``stats`` is the same on every worker: the counters live in PostgreSQL, advanced in each batch's
own transaction, and every worker reads all partitions' totals from there. ``?scope=local`` gives
the totals of the request partitions this worker owns, from its ``stats`` table.
"""

from __future__ import annotations

import io
import logging
from importlib import resources
from typing import TYPE_CHECKING, Any, ClassVar, cast

import aiohttp.web
from faust.web import Request, Response, View

from agents.core import control_state
from agents.core.cohorts import write_report
from agents.jobs.validation import UnknownUser
from agents.stores import postgres
from streams import topics
from streams.control_topic import pause_value, throttle_value
from streams.trace_context import incoming
from streams.transactional_writer import KafkaUnavailable, TransactionalWriter
from streams.web import api, user_ids
from streams.web.admin import Admin
from streams.web.inputs import (
    MAX_BODY_BYTES,
    InputError,
    authorize,
    authorize_read,
    check_run_id,
    check_user_id,
    may_read_user_ids,
    parse_bulk,
    parse_cancel,
    parse_options,
    parse_pause,
    parse_throttle,
)
from streams.web.metrics import prometheus_text
from streams.web.openapi import openapi_text
from streams.web.readouts import Readouts

if TYPE_CHECKING:
    from streams.context import ServiceContext

log = logging.getLogger(__name__)

PREFIX = "/api/v1/onboarding/migration"
_POSTGRES_ERRORS = postgres.FAILED


@aiohttp.web.middleware
async def json_errors(request: aiohttp.web.Request, handler: Any) -> aiohttp.web.StreamResponse:
    """A path no route serves (404) or a method a route does not take (405) answers
    ``{"error": …}`` like every other error of the API, not aiohttp's plain text."""
    try:
        response: aiohttp.web.StreamResponse = await handler(request)
    except (aiohttp.web.HTTPNotFound, aiohttp.web.HTTPMethodNotAllowed) as exc:
        headers = {name: value for name, value in exc.headers.items() if name == "Allow"}
        return aiohttp.web.json_response(
            {"error": f"{exc.reason}: {request.method} {request.path}"},
            status=exc.status,
            headers=headers,
        )
    return response


class ServiceView(View):
    """A view of one worker: ``readouts`` and ``admin`` are set on the subclass
    ``register_views`` makes."""

    readouts: ClassVar[Readouts]
    admin: ClassVar[Admin]

    def refuse(self, error: InputError) -> Response:
        headers = {"WWW-Authenticate": 'Bearer realm="migrator"'} if error.status == 401 else None
        return self.json({"error": error.message}, status=error.status, headers=headers)

    def authorize_read(self, request: Request) -> None:
        """A read of users' data: the read or the admin token (401/403 as ``InputError``)."""
        settings = self.readouts.context.settings
        header = request.headers.get("Authorization")
        authorize_read(settings.read_token_value, settings.admin_token_value, header)

    def shows_user_ids(self, request: Request) -> bool:
        """Whether an open answer may name users: a token was given and is right (a wrong one
        is ``InputError``)."""
        settings = self.readouts.context.settings
        header = request.headers.get("Authorization")
        return may_read_user_ids(settings.read_token_value, settings.admin_token_value, header)

    def unavailable(self, exc: BaseException) -> Response:
        return self.json({"error": f"PostgreSQL did not answer: {exc}"}, status=503)

    async def admin_body(self, request: Request) -> bytes:
        """The body of a mutating endpoint, once its bearer token is right (401/403/413 as
        ``InputError``)."""
        authorize(
            self.admin.context.settings.admin_token_value, request.headers.get("Authorization")
        )
        http = cast(aiohttp.web.Request, request)
        if (http.content_length or 0) > MAX_BODY_BYTES:
            raise InputError(413, f"body is larger than {MAX_BODY_BYTES} bytes")
        return await http.content.read(MAX_BODY_BYTES + 1)


class PublishView(ServiceView):
    """Base of the mutating endpoints: bearer token first, then the body."""

    action: ClassVar[str] = "migrate"

    async def handle(self, request: Request, user_id: str | None) -> Response:
        admin = self.admin
        try:
            raw = await self.admin_body(request)
            held_out: dict[str, int] = {}
            selection: dict[str, object] = {}
            if user_id is not None:
                user_ids, options = [check_user_id(user_id)], parse_options(raw)
            else:
                bulk = parse_bulk(raw, allow_all=self.action == "migrate")
                options = bulk.options
                if bulk.user_ids is not None:
                    user_ids = bulk.user_ids
                    selection = {"kind": "ids", "given": len(user_ids)}
                else:
                    user_ids, held_rolled_back, held_failed = await admin.all_unmigrated(
                        include_rolled_back=bulk.include_rolled_back,
                        include_failed=bulk.include_failed,
                        percent=bulk.percent,
                    )
                    held_out = {
                        "held_out_rolled_back": held_rolled_back,
                        "held_out_failed": held_failed,
                    }
                    selection = {"kind": "everyone"}
                    if bulk.percent is not None:
                        selection = {"kind": "percent", "percent": bulk.percent}
        except InputError as error:
            return self.refuse(error)
        # A call that carries a valid traceparent is continued by every request it publishes;
        # an invalid one is ignored (each request starts its own trace), never refused.
        trace = incoming(list(request.headers.items()))
        try:
            published = await admin.publish_requests(
                user_ids, self.action, options, selection, trace
            )
        except KafkaUnavailable as exc:
            return self.json({"error": str(exc)}, status=503)
        except _POSTGRES_ERRORS as exc:
            return self.unavailable(exc)
        answer: dict[str, object] = {
            "action": self.action,
            "dry_run": options.dry_run,
            "count": len(published),
            "request_ids": [request_id for request_id, _ in published],
            "trace_ids": [trace_id for _, trace_id in published],
            "run_id": options.run_id,
            **held_out,
        }
        return self.json(api.answer(api.Accepted, answer), status=202)


class MigrateMany(PublishView):
    async def post(self, request: Request) -> Response:
        return await self.handle(request, None)


class MigrateOne(PublishView):
    async def post(self, request: Request, user_id: str) -> Response:
        return await self.handle(request, user_id)


class RollbackMany(PublishView):
    action = "rollback"

    async def post(self, request: Request) -> Response:
        return await self.handle(request, None)


class RollbackOne(PublishView):
    action = "rollback"

    async def post(self, request: Request, user_id: str) -> Response:
        return await self.handle(request, user_id)


class Stats(ServiceView):
    async def get(self, request: Request) -> Response:
        scope = request.query.get("scope", "cluster")
        try:
            shown = self.shows_user_ids(request)
            if scope not in ("cluster", "local"):
                raise InputError(400, f"scope must be cluster or local, not {scope!r}")
        except InputError as error:
            return self.refuse(error)
        if scope == "local":
            return self.json(
                api.answer(api.LocalStats, {"totals": await self.readouts.local_totals()})
            )
        try:
            _, summary = await self.readouts.stats()
        except _POSTGRES_ERRORS as exc:
            return self.unavailable(exc)
        summary["revalidation"] = user_ids.revalidation(summary["revalidation"], shown=shown)
        return self.json(api.answer(api.Stats, summary))


class Progress(ServiceView):
    async def get(self, request: Request) -> Response:
        try:
            return self.json(api.answer(api.Progress, await self.readouts.progress()))
        except _POSTGRES_ERRORS as exc:
            return self.unavailable(exc)


class Health(ServiceView):
    async def get(self, request: Request) -> Response:
        ok, checks = await self.readouts.health()
        degraded = ok and not all(check["ok"] for check in checks.values())
        answer = {
            "ok": ok,
            "status": "degraded" if degraded else "ok" if ok else "down",
            "checks": checks,
            "worker": self.readouts.identity(),
            "control": self.readouts.control(),
        }
        return self.json(api.answer(api.Health, answer), status=200 if ok else 503)


class Validate(ServiceView):
    async def get(self, request: Request, user_id: str) -> Response:
        try:
            # The token first: without it, not even whether the user exists is told.
            self.authorize_read(request)
            check_user_id(user_id)
        except InputError as error:
            return self.refuse(error)
        try:
            report = await self.readouts.validate(user_id)
        except UnknownUser as exc:
            return self.refuse(InputError(404, str(exc)))
        except postgres.UserBusy as exc:  # a writer held the user's row past the wait
            return self.json({"error": str(exc)}, status=503)
        except _POSTGRES_ERRORS as exc:
            return self.unavailable(exc)
        return self.json(api.answer(api.Validation, report.as_dict()))


class Dashboard(ServiceView):
    async def get(self, request: Request) -> Response:
        page = resources.files("streams.web").joinpath("dashboard.html").read_text("utf-8")
        return self.html(page)


class Metrics(ServiceView):
    async def get(self, request: Request) -> Response:
        # Always 200: with PostgreSQL away it still says so (dependency_up 0) and exports what
        # needs no query; a failed scrape would lose exactly that series.
        metrics = await self.readouts.worker_metrics()
        return self.text(prometheus_text(metrics), content_type="text/plain; version=0.0.4")


class Workers(ServiceView):
    async def get(self, request: Request) -> Response:
        try:
            workers = await self.readouts.workers()
        except _POSTGRES_ERRORS as exc:
            return self.unavailable(exc)
        return self.json(api.answer(api.Workers, {"workers": workers}))


class Failures(ServiceView):
    async def get(self, request: Request) -> Response:
        try:
            shown = self.shows_user_ids(request)
            failures = await self.readouts.failures()
        except InputError as error:
            return self.refuse(error)
        except _POSTGRES_ERRORS as exc:
            return self.unavailable(exc)
        return self.json(api.answer(api.Failures, user_ids.failures(failures, shown=shown)))


class Runs(ServiceView):
    async def get(self, request: Request) -> Response:
        try:
            runs = await self.readouts.runs()
        except _POSTGRES_ERRORS as exc:
            return self.unavailable(exc)
        return self.json(api.answer(api.Runs, {"runs": runs}))


class OneRun(ServiceView):
    async def get(self, request: Request, run_id: str) -> Response:
        try:
            check_run_id(run_id)
            found = await self.readouts.runs(run_ids=[run_id], limit=1)
            if not found:
                raise InputError(404, f"no run named {run_id!r}")
        except InputError as error:
            return self.refuse(error)
        except _POSTGRES_ERRORS as exc:
            return self.unavailable(exc)
        return self.json(api.answer(api.Run, found[0]))


class RunReport(ServiceView):
    """``?format=csv`` (default) or ``json``: the run's failed users with their codes (the
    read or admin token: it lists users)."""

    async def get(self, request: Request, run_id: str) -> Response:
        fmt = request.query.get("format", "csv")
        try:
            self.authorize_read(request)
            check_run_id(run_id)
            if fmt not in ("csv", "json"):
                raise InputError(400, "format must be csv or json")
            rows = await self.readouts.run_report(run_id)
            if rows is None:
                raise InputError(404, f"no run named {run_id!r}")
        except InputError as error:
            return self.refuse(error)
        except _POSTGRES_ERRORS as exc:
            return self.unavailable(exc)
        out = io.StringIO()
        write_report(rows, fmt, out)
        content_type = "application/json" if fmt == "json" else "text/csv"
        return self.text(out.getvalue(), content_type=content_type)


class CancelRun(ServiceView):
    """``POST runs/{run_id}/cancel``: bearer token, optional body; the run's requests not
    answered yet are answered failed/cancelled, touching no user (404: no such run; 409: all
    its requests are answered already)."""

    async def post(self, request: Request, run_id: str) -> Response:
        try:
            body = parse_cancel(await self.admin_body(request))
            check_run_id(run_id)
            found = await self.readouts.runs(run_ids=[run_id], limit=1)
            if not found:
                raise InputError(404, f"no run named {run_id!r}")
            if found[0]["remaining"] == 0:
                raise InputError(
                    409, f"run {run_id}: all its requests are answered: nothing left to cancel"
                )
        except InputError as error:
            return self.refuse(error)
        except _POSTGRES_ERRORS as exc:
            return self.unavailable(exc)
        try:
            answer = await self.admin.cancel_run(run_id, reason=body.reason, by=body.by)
        except _POSTGRES_ERRORS as exc:
            return self.unavailable(exc)
        except Exception as exc:  # noqa: BLE001 - Kafka did not take it: say so
            return self.json({"error": f"Kafka did not take the cancel: {exc}"}, status=503)
        return self.json(api.answer(api.RunCancelled, answer), status=202)


class Control(ServiceView):
    async def get(self, request: Request) -> Response:
        return self.json(api.answer(api.Control, self.readouts.control()))


class ControlChange(ServiceView):
    """``POST control/pause|resume|throttle``: bearer token, body, one control record."""

    key: ClassVar[str] = control_state.PAUSE
    paused: ClassVar[bool] = True  # with key pause: pause or resume

    async def post(self, request: Request) -> Response:
        try:
            raw = await self.admin_body(request)
            if self.key == control_state.THROTTLE:
                throttle = parse_throttle(raw)
                value = throttle_value(rate=throttle.rate, by=throttle.by)
            else:
                body = parse_pause(raw)
                value = pause_value(paused=self.paused, reason=body.reason, by=body.by)
        except InputError as error:
            return self.refuse(error)
        try:
            state = await self.admin.write_control(self.key, value)
        except KafkaUnavailable as exc:  # nothing was written: say so, change nothing
            return self.json({"error": f"control record not written: {exc}"}, status=503)
        return self.json(api.answer(api.Control, state), status=202)


class Pause(ControlChange):
    pass


class Resume(ControlChange):
    paused = False


class Throttle(ControlChange):
    key = control_state.THROTTLE


class History(ServiceView):
    async def get(self, request: Request) -> Response:
        return self.json(api.answer(api.History, self.readouts.history()))


class Revalidation(ServiceView):
    async def get(self, request: Request) -> Response:
        try:
            shown = self.shows_user_ids(request)
            found = await self.readouts.revalidation()
        except InputError as error:
            return self.refuse(error)
        except _POSTGRES_ERRORS as exc:
            return self.unavailable(exc)
        return self.json(api.answer(api.Revalidation, user_ids.revalidation(found, shown=shown)))


class Audit(ServiceView):
    async def get(self, request: Request) -> Response:
        try:
            shown = self.shows_user_ids(request)
            found = await self.readouts.answer_audit()
        except InputError as error:
            return self.refuse(error)
        except _POSTGRES_ERRORS as exc:
            return self.unavailable(exc)
        return self.json(api.answer(api.Audit, user_ids.audit(found, shown=shown)))


class OpenApi(ServiceView):
    async def get(self, request: Request) -> Response:
        return self.text(openapi_text(), content_type="application/json")


ROUTES: tuple[tuple[str, type[ServiceView]], ...] = (
    (f"{PREFIX}/migrate", MigrateMany),
    (f"{PREFIX}/migrate/{{user_id}}", MigrateOne),
    (f"{PREFIX}/rollback", RollbackMany),
    (f"{PREFIX}/rollback/{{user_id}}", RollbackOne),
    (f"{PREFIX}/stats", Stats),
    (f"{PREFIX}/progress", Progress),
    (f"{PREFIX}/health", Health),
    (f"{PREFIX}/validate/{{user_id}}", Validate),
    (f"{PREFIX}/workers", Workers),
    (f"{PREFIX}/failures", Failures),
    (f"{PREFIX}/runs", Runs),
    (f"{PREFIX}/runs/{{run_id}}", OneRun),
    (f"{PREFIX}/runs/{{run_id}}/report", RunReport),
    (f"{PREFIX}/runs/{{run_id}}/cancel", CancelRun),
    (f"{PREFIX}/control", Control),
    (f"{PREFIX}/control/pause", Pause),
    (f"{PREFIX}/control/resume", Resume),
    (f"{PREFIX}/control/throttle", Throttle),
    (f"{PREFIX}/history", History),
    (f"{PREFIX}/revalidation", Revalidation),
    (f"{PREFIX}/audit", Audit),
    ("/dashboard", Dashboard),
    ("/metrics", Metrics),
    ("/openapi.json", OpenApi),
)


def register_views(context: ServiceContext) -> None:
    """Serve every route of ``ROUTES`` on the context's app, bound to its read model and admin."""
    readouts = Readouts(context)
    writer = TransactionalWriter(context.settings, topic=topics.REQUESTED, role="admin")
    context.app.service(writer)  # type: ignore[arg-type]  # Faust starts instances as well
    admin = Admin(context, readouts, writer)
    for path, view in ROUTES:
        bound = type(view.__name__, (view,), {"readouts": readouts, "admin": admin})
        context.app.page(path)(bound)
