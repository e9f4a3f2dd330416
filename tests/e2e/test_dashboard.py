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
import uuid
from collections.abc import Iterator

import pytest
from harness import ADMIN_TOKEN, READ_TOKEN, Stack, Worker, chromium, seed
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
        drawn = await page.evaluate(
            "(() => { const c = document.getElementById('chart');"
            " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            " let blue = 0; for (let i = 0; i < d.length; i += 4) {"
            " if (d[i] === 46 && d[i + 1] === 144 && d[i + 2] === 250) blue++; }"
            " return blue; })()"
        )
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
        await browser.close()
    assert not errors, errors


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
