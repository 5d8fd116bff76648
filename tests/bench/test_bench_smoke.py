"""The benchmark at a tiny scale, so `make bench` keeps working as the code changes.
No timing is asserted: only that every measured path runs and reports against its target."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.postgres
def test_the_benchmark_runs_end_to_end_at_a_tiny_scale(tmp_path):
    db = settings.DATABASES["default"]
    user, host, port = db["USER"] or "postgres", db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    admin_url = f"postgresql://{user}@{host}:{port}/postgres"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--leads",
            "3000",
            "--events-per-lead",
            "4",
            "--repeat",
            "1",
            # Few latency samples and page loads: the smoke test checks that they run.
            "--samples",
            "10",
            "--database",
            "leadscoring_bench_smoke",
            "--admin-url",
            admin_url,
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads((tmp_path / "results.json").read_text())
    by_name = {item["name"]: item for item in report["results"]}
    rescore = by_name["full rescore (read features, score, write back)"]
    assert rescore["value"] > 0 and rescore["floor"] > 0 and rescore["ratio"] > 0
    assert by_name["KPI dashboard data p95"]["value"] > 0
    # The KPI job refreshes the cube first, as beat does, so it measures the cube being read.
    assert by_name["KPI dashboard data p95"]["cube_read"] is True
    assert rescore["peak_rss_mb"] > 0
    assert by_name["lead list page p95 (filters, sorting)"]["value"] > 0
    assert report["machine"]["leads"] == 3000
    assert by_name["event ingest through the REST API, batches of 1,000"]["value"] > 0
    assert by_name["one event in -> new score stored, p95"]["value"] > 0
    # The ingest's leads were rescored (the backlog drained) before the single events went in.
    backlog = by_name["ingest backlog rescored by one worker"]
    assert backlog["leads"] > 0 and backlog["value"] > 0
    # Every lead scored with the active model (the count is in the row's name).
    assert by_name["scoring 3,000 leads with the active model"]["value"] > 0
    assert by_name["impact preview of a draft"]["value"] > 0
    assert by_name["CSV import of 100,000 leads"]["value"] > 0
    # Page loads in headless Chromium, with the server's share and the bytes beside them.
    for page in ("lead queue", "lead page", "KPI dashboard"):
        row = by_name[f"{page} load in headless Chromium p95 (load event, no cache)"]
        assert row["value"] >= row["server_p95_ms"] > 0
        assert row["kilobytes_per_load"] > 0
    kpi = by_name["KPI dashboard load in headless Chromium p95 (load event, no cache)"]
    assert kpi["kilobytes_per_load"] > 1000  # the plotly bundle, fetched again every load
    measured = [item for item in report["results"] if item["value"] is None]
    assert measured == [], measured
    assert "| path | value | target |" in (tmp_path / "results.md").read_text()
