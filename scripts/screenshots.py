"""`make screenshots`: the README's pictures of each page, taken from a freshly seeded demo.

Seeds a throwaway SQLite database, serves it with gunicorn, logs in as each role in Debian's
chromium (through Playwright) and saves docs/screenshots/<page>.png."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.pageload import COMPLETE  # noqa: E402 - the page-complete test the benchmark times

OUT = ROOT / "docs" / "screenshots"
PORT = os.environ.get("SCREENSHOT_PORT", "8765")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
# (file name, user, path, what to wait for)
SHOTS = [
    ("login", None, "/accounts/login/", "form"),
    ("home-sales", "sales1", "/", "main"),
    ("leads", "sales1", "/leads/", "table"),
    ("lead", "sales1", "TOP_LEAD", "[data-testid=breakdown]"),
    ("feedback", "ops", "/feedback/", "main"),
    ("kpis", "manager", "/kpis/", "main"),
    ("rules", "ops", "/rules/", "main"),
    ("models", "ops", "/models/", "main"),
    ("imports", "ops", "/imports/", "main"),
    ("integrations", "admin", "/integrations/", "main"),
    ("api-docs", "admin", "/api/docs/", ".swagger-ui"),
]


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="leadscoring-shots-"))
    env = {
        **os.environ,
        "DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{workdir / 'demo.sqlite3'}",
        "VAR_DIR": str(workdir / "var"),
        "DEMO_PASSWORD": "demo",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    subprocess.run([*manage, "seed_demo", "--leads", "3000"], cwd=ROOT, env=env, check=True)
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "leadscoring.wsgi:application",
            "--bind",
            f"127.0.0.1:{PORT}",
            "--workers",
            "2",
        ],
        cwd=ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{PORT}"
    try:
        for _ in range(100):
            try:
                requests.get(f"{base}/healthz", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.2)
        OUT.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
            )
            for name, user, path, selector in SHOTS:
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                if user:
                    page.goto(f"{base}/accounts/login/")
                    page.fill("#id_username", user)
                    page.fill("#id_password", "demo")
                    page.click("button[type=submit]")
                    page.wait_for_load_state("networkidle")
                if path == "TOP_LEAD":
                    page.goto(f"{base}/leads/")
                    page.locator("table a[href^='/leads/']").first.click()
                else:
                    page.goto(f"{base}{path}")
                page.wait_for_selector(selector, timeout=20000)
                page.wait_for_load_state("networkidle")
                # Charts are drawn after the load event (static/js/charts.js), parts of a page
                # (the KPI calibration, a lead's model reasons) load after it: wait for both.
                page.wait_for_function(COMPLETE, timeout=30000)
                page.screenshot(path=str(OUT / f"{name}.png"), full_page=False)
                print(f"saved docs/screenshots/{name}.png", flush=True)
                context.close()
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
