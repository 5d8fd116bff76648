"""Page loads as a user gets them: the lead queue (/leads/), a lead page (/leads/<id>/) and the
KPI dashboard (/kpis/) served by gunicorn (2 workers, 4 threads each, as `make run` serves) and
loaded in Debian's headless Chromium, timed to the load event with the browser's cache off,
beside the server's share (request start to response end of the HTML) and the moment the page
is complete: every chart drawn (charts.js fetches plotly after the load event) and every part
loaded after the page (the lead's model reasons, the KPI calibration) swapped in."""

from __future__ import annotations

import statistics
from pathlib import Path

from bench.live import _wait_for, start_web

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
# The bench's users (bench/__main__.py `prepare`).
PASSWORD = "bench-only"  # noqa: S105 - the throwaway bench database's users
# (name, user, path); "{lead}" is the first lead of sales1's queue.
WARM_LOADS = 4
PAGES = (
    ("lead queue", "sales1", "/leads/"),
    ("lead page", "sales1", "/leads/{lead}/"),
    ("KPI dashboard", "manager", "/kpis/"),
)


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


# Nothing left to fill in: no chart waiting to be drawn, no htmx placeholder waiting to load.
COMPLETE = (
    "() => document.querySelectorAll("
    "'[data-figure]:not([data-rendered]), [hx-trigger=\"load\"]').length === 0"
)


def _complete_ms(page) -> float:
    """Milliseconds from the navigation's start until the page is complete (COMPLETE)."""
    page.wait_for_function(COMPLETE, timeout=60_000)
    return float(page.evaluate("() => performance.now()"))


def _timings(page) -> tuple[float, float, int]:
    """(load event ms, server ms, bytes) of the page just loaded, from the browser's
    navigation and resource timing entries (bytes: bodies as sent, the page and every file)."""
    entry = page.evaluate(
        "() => { const e = performance.getEntriesByType('navigation')[0];"
        " const files = performance.getEntriesByType('resource')"
        "   .reduce((sum, r) => sum + (r.encodedBodySize || 0), 0);"
        " return [e.loadEventEnd - e.startTime, e.responseEnd - e.requestStart,"
        "   e.encodedBodySize + files]; }"
    )
    return float(entry[0]), float(entry[1]), int(entry[2])


def measure(env: dict[str, str], *, loads: int) -> dict[str, dict]:
    """{page name: {"p95_ms", "median_ms", "server_p95_ms", "complete_p95_ms",
    "kilobytes_per_load"}} over `loads` cold loads of each page (after WARM_LOADS warm-up
    loads)."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install -y chromium")
    env = {**env, "ALLOWED_HOSTS": "127.0.0.1"}
    # As `make run` serves: a page's own requests (static files, the model's reasons loaded
    # after it) do not queue the next page behind them.
    web, base = start_web(env, threads=4)
    results: dict[str, dict] = {}
    try:
        _wait_for(f"{base}/healthz")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            contexts: dict[str, object] = {}
            lead_id = None

            for name, username, path in PAGES:
                if username not in contexts:
                    context = browser.new_context(base_url=base)
                    page = context.new_page()
                    page.goto("/accounts/login/")
                    page.fill("input[name=username]", username)
                    page.fill("input[name=password]", PASSWORD)
                    with page.expect_navigation():
                        page.click("button[type=submit], input[type=submit]")
                    if "/accounts/login/" in page.url:
                        raise RuntimeError(f"bench login as {username} failed")
                    # Every load fetches every file again: the first visit, the slow one.
                    cdp = context.new_cdp_session(page)
                    cdp.send("Network.enable")  # without it the next line has no effect
                    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
                    contexts[username] = page
                page = contexts[username]
                if "{lead}" in path:
                    if lead_id is None:
                        page.goto("/leads/", wait_until="load")
                        lead_id = page.locator("table.queue tbody tr").first.get_attribute(
                            "data-lead-id"
                        )
                    path = path.format(lead=lead_id)
                # Warm the server: each gunicorn worker's first request imports the chart and
                # page code (2-3 s) and opens its connection; which worker answers is not ours
                # to pick, so a few loads before the measured ones.
                for _ in range(WARM_LOADS):
                    page.goto(path, wait_until="load")
                loads_ms, server_ms, complete_ms, sizes = [], [], [], []
                for _ in range(loads):
                    page.goto(path, wait_until="load")
                    complete_ms.append(_complete_ms(page))
                    load, server, size = _timings(page)
                    loads_ms.append(load)
                    server_ms.append(server)
                    sizes.append(size)
                results[name] = {
                    "p95_ms": round(_p95(loads_ms), 1),
                    "median_ms": round(statistics.median(loads_ms), 1),
                    "server_p95_ms": round(_p95(server_ms), 1),
                    "complete_p95_ms": round(_p95(complete_ms), 1),
                    "kilobytes_per_load": round(statistics.median(sizes) / 1024),
                }
            browser.close()
    finally:
        web.terminate()
        web.wait(timeout=30)
    return results
