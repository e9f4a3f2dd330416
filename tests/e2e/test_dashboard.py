"""The dashboard in a real headless browser (Debian's chromium, driven by Playwright) while a
flood runs: its numbers change, its chart draws, every panel fills, and no script error occurs.
The panels that name users show their counts to anyone and the user ids only with the read
token, typed into the page.

``DASHBOARD_SCREENSHOT=PATH`` also saves a screenshot taken during the flood (the README's is
made this way by ``scripts/dashboard-screenshot``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from harness import (
    ADMIN_TOKEN,
    MIGRATOR,
    READ_TOKEN,
    ROOT,
    Stack,
    Worker,
    chromium,
    kill_server,
    restart_servers,
    seed,
)
from playwright.async_api import ConsoleMessage, Page, async_playwright

FLOOD_USERS = 20_000


@pytest.fixture(scope="module")
def worker(stack: Stack) -> Iterator[Worker]:
    env = {"MIGRATOR_READ_TOKEN": READ_TOKEN}
    running = Worker(stack, app_id=f"e2e-dash-{uuid.uuid4().hex[:6]}", extra_env=env).start()
    yield running
    running.stop()


async def number(page: Page, selector: str) -> int:
    value = (await page.text_content(selector) or "").replace(",", "").replace(" ", "")
    return int(value) if value.isdigit() else -1


async def test_the_dashboard_keeps_updating_during_a_flood_without_script_errors(
    stack: Stack, worker: Worker
) -> None:
    users = await seed(stack, FLOOD_USERS, prefix="dash-", problem_ratio=0.01)
    errors: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium(), args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        page = await browser.new_page(viewport={"width": 1200, "height": 900})

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                errors.append(message.text)

        page.on("console", on_console)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"{worker.url}/dashboard")
        await page.wait_for_function("document.getElementById('count-requested') !== null")

        # The flood is a run started over HTTP (everyone not yet migrated), as an operator would.
        flood = asyncio.create_task(
            asyncio.to_thread(
                worker.request,
                "POST",
                "/api/v1/onboarding/migration/migrate",
                body={"all": True, "run": "dashboard-flood"},
                token=ADMIN_TOKEN,
            )
        )
        await page.wait_for_function(
            "Number((document.getElementById('backlog').textContent || '0').replace(/,/g, '')) > 0",
            timeout=60_000,
        )
        seen = [await number(page, "#count-requested")]
        for _ in range(3):
            await asyncio.sleep(2)
            seen.append(await number(page, "#count-requested"))
        assert seen == sorted(seen) and seen[-1] > seen[0], f"the counters froze: {seen}"
        assert await number(page, "#rate") > 0
        await page.wait_for_function(
            "document.querySelector('#workers td') && "
            "document.querySelector('#workers td').textContent.includes('(this)')",
            timeout=15_000,
        )
        banner = await page.text_content("#control") or ""
        assert banner.startswith("running"), banner
        await page.wait_for_function(
            "document.getElementById('reval-summary').textContent.includes('re-validated')",
            timeout=15_000,
        )
        health = await page.text_content("#health") or ""
        assert all(f"{name}: up" in health for name in ("postgres", "redis", "kafka")), health
        drawn = await page.evaluate(BLUE_PIXELS)
        assert drawn > 50, "no outcomes line on the chart"
        screenshot = os.environ.get("DASHBOARD_SCREENSHOT")
        if screenshot:
            await page.screenshot(path=screenshot, full_page=True)
        status, accepted = await flood
        assert status == 202 and accepted["count"] > 0.99 * len(users), accepted  # not "migrated"
        await page.wait_for_function(
            "document.querySelector('#runs td') && "
            "document.querySelector('#runs td').textContent === 'dashboard-flood'",
            timeout=15_000,
        )
        await page.wait_for_function(
            "document.getElementById('eta').textContent === 'done'", timeout=120_000
        )
        await page.wait_for_function(
            "document.querySelector('#failures td') && "
            "!document.querySelector('#failures td').textContent.includes('none')",
            timeout=15_000,
        )
        # The answer audit has judged the flood: every request answered once.
        await page.wait_for_function(
            "document.getElementById('audit-summary').textContent.includes('audited through "
            "offsets 0:') && document.getElementById('audit-summary').textContent.includes("
            "'No request without exactly one answer')",
            timeout=60_000,
        )
        await the_user_ids_need_the_read_token(page, errors)
        await a_tab_opened_after_the_run_still_tells_it(browser, worker, errors)
        await browser.close()
    assert not errors, errors


async def open_dashboard(browser: Any, worker: Worker, errors: list[str]) -> Page:
    """A dashboard tab of the worker whose script errors land in ``errors``."""
    page = await browser.new_page(viewport={"width": 1200, "height": 900})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{worker.url}/dashboard")
    return page


BLUE_PIXELS = (
    "(() => { const c = document.getElementById('chart');"
    " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
    " let blue = 0; for (let i = 0; i < d.length; i += 4) {"
    " if (d[i] === 46 && d[i + 1] === 144 && d[i + 2] === 250) blue++; }"
    " return blue; })()"
)


async def a_tab_opened_after_the_run_still_tells_it(
    browser: Any, worker: Worker, errors: list[str]
) -> None:
    """The chart and the elapsed time come from the worker, not from when the tab opened: a tab
    opened after the flood draws it and says how long the run took; the finished run shows its
    average rate and duration; lag is named as Kafka's tools name it."""
    late = await open_dashboard(browser, worker, errors)
    await late.wait_for_function(
        "document.getElementById('elapsed').textContent.startsWith('took ') && "
        "document.getElementById('elapsed').textContent.includes('(dashboard-flood)')",
        timeout=15_000,
    )
    assert await late.evaluate(BLUE_PIXELS) > 50, "the flood is not on a late tab's chart"
    row = await late.text_content("#runs tr") or ""
    assert "average" in row and "done in" in row, row
    heads = await late.evaluate("document.querySelector('#workers').parentElement.innerText")
    assert "end − committed" in heads, heads
    await late.close()


# The failures panel's user ids: the flood's broken users (seeded with the prefix dash-).
FAILED_USERS = "((document.querySelector('#failures td:nth-child(4)') || {}).textContent || '')"
READ_STATE = "document.getElementById('read-token-state').textContent"


async def the_user_ids_need_the_read_token(page: Page, errors: list[str]) -> None:
    """Counts without a token, user ids with the read token (kept for the tab), none with a
    wrong one (said on the page), none again once forgotten."""
    assert await page.text_content("#failures td:nth-child(4)") == "read token needed"
    assert "user ids need the read token" in (await page.text_content("#read-token-state") or "")
    assert await number(page, "#failures td:nth-child(3)") > 0  # the count stays open

    before = len(errors)
    await page.fill("#read-token", "e2e-wrong-token-0123456789")
    await page.press("#read-token", "Enter")
    await page.wait_for_function(f"{READ_STATE}.includes('read token refused')", timeout=15_000)
    assert "wrong bearer token" in (await page.text_content("#read-token-state") or "")
    assert await page.text_content("#failures td:nth-child(4)") == "read token needed"
    assert await number(page, "#failures td:nth-child(3)") > 0
    # The browser logs each refused fetch (401) as an error: expected here, nothing else.
    refused = errors[before:]
    assert all("401" in error for error in refused), refused
    del errors[before:]

    await page.fill("#read-token", READ_TOKEN)
    await page.click("#read-token-use")
    await page.wait_for_function(f"{FAILED_USERS}.startsWith('dash-')", timeout=15_000)
    assert "user ids shown" in (await page.text_content("#read-token-state") or "")
    await page.reload()
    await page.wait_for_function(f"{FAILED_USERS}.startsWith('dash-')", timeout=15_000)
    await page.click("#read-token-forget")
    await page.wait_for_function(f"{FAILED_USERS} === 'read token needed'", timeout=15_000)
    assert await page.evaluate("sessionStorage.length") == 0


def _metrics(worker: Worker) -> tuple[int, str]:
    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=20) as answer:
        return answer.status, answer.read().decode()


async def test_outages_are_named_in_red_and_unknown_figures_are_not_zeros(
    stack: Stack, worker: Worker
) -> None:
    """(Last in the module: it stops the stack's servers.) Kafka down: a red banner naming it,
    the worker not "taking requests", no raw Python text. PostgreSQL down, in a tab opened
    during the outage: "unknown" where it once asserted "0 of 0 migrated", "no run yet" and
    no failures; /metrics answers 200 with ``dependency_up`` 0; ``stats --watch`` keeps
    watching. Back up: the banner goes by itself."""
    errors: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium(), args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        page = await open_dashboard(browser, worker, errors)
        await page.wait_for_function(
            "document.querySelector('#workers td') && "
            "document.querySelector('#workers td').textContent.includes('(this)')",
            timeout=30_000,
        )
        kill_server(stack, "kafka")
        try:
            await page.wait_for_function(
                "!document.getElementById('outage').hidden && document.getElementById("
                "'outage').textContent.includes('Kafka not answering since')",
                timeout=30_000,
            )
            await page.wait_for_function(
                "document.getElementById('workers').textContent.includes('no: Kafka down')",
                timeout=15_000,
            )
            health = await page.text_content("#health") or ""
            assert "processing: waiting for Kafka" in health, health
            assert "<" not in health and "AddressFamily" not in health, health
            status, text = _metrics(worker)
            assert status == 200 and 'dependency="kafka"} 0' in text
        finally:
            restart_servers(stack)
        started = time.monotonic()
        await page.wait_for_function("document.getElementById('outage').hidden", timeout=60_000)
        print(f"Kafka back: banner gone after {time.monotonic() - started:.1f} s")
        # The worker's own loops outlived the outage: its answer audit goes on (a stopped
        # Kafka client once let a CancelledError out that ended the loop for good).
        rounds = worker.get("/api/v1/onboarding/migration/audit")[1]["worker"]["rounds"]
        deadline = time.monotonic() + 60
        while worker.get("/api/v1/onboarding/migration/audit")[1]["worker"]["rounds"] < rounds + 2:
            assert time.monotonic() < deadline, "the answer audit stopped after the outage"
            await asyncio.sleep(2)

        kill_server(stack, "postgres", sig=signal.SIGINT)
        watch = subprocess.Popen(
            [*MIGRATOR, "stats", "--watch", "--interval", "1", "--url", worker.url],
            cwd=ROOT,
            env=stack.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            fresh = await open_dashboard(browser, worker, errors)
            await fresh.wait_for_function(
                "document.getElementById('outage').textContent.includes("
                "'PostgreSQL not answering since')",
                timeout=30_000,
            )
            assert await fresh.text_content("#migrated-of") == "unknown"
            assert await fresh.text_content("#pct") == "unknown"
            runs = await fresh.text_content("#runs") or ""
            failures = await fresh.text_content("#failures") or ""
            assert "unknown" in runs and "no run yet" not in runs, runs
            assert "unknown" in failures and "none" not in failures, failures
            status, text = _metrics(worker)
            assert status == 200, text
            assert 'dependency="postgres"} 0' in text, text
            assert "process_resident_memory_bytes" in text
            await asyncio.sleep(4)
            assert watch.poll() is None, f"the watch ended: {watch.communicate()[0]}"
        finally:
            watch.terminate()
            lines = watch.communicate(timeout=10)[0]
            restart_servers(stack)
        assert "progress unknown: PostgreSQL down since" in lines, lines
        started = time.monotonic()
        await fresh.wait_for_function(
            "document.getElementById('outage').hidden && "
            "document.getElementById('migrated-of').textContent.includes(' of ')",
            timeout=90_000,
        )
        print(f"PostgreSQL back: figures again after {time.monotonic() - started:.1f} s")
        await browser.close()
    assert not errors, errors
