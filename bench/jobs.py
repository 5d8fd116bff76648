"""One measured job per process, so each bulk job's peak memory (ru_maxrss) is its own.

`python -m bench.jobs NAME [ARGS]` prints one JSON object. The database comes from
DATABASE_URL, set by bench/__main__.py."""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leadscoring.settings")
os.environ.setdefault("DEBUG", "true")

import django

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.test import Client  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def job_rescore() -> dict:
    from scoring.services.rescore import rescore_all

    started = time.perf_counter()
    run = rescore_all(inline=True)
    return {"seconds": time.perf_counter() - started, "scored": run.leads_scored}


def job_rescore_due(days: float = 30.0) -> dict:
    """The time-based rescore as of `days` after the last full rescore: how many leads were
    due (found through the due-time index) and how long rescoring them took."""
    import datetime as dt

    from scoring.models import LeadDue, RescoreRun
    from scoring.services.rescore import rescore_due

    last = RescoreRun.objects.exclude(as_of=None).latest("as_of").as_of
    as_of = last + dt.timedelta(days=days)
    started = time.perf_counter()
    due = LeadDue.objects.filter(due_at__lte=as_of).count()
    counted = time.perf_counter() - started
    outcome = rescore_due(as_of)
    return {
        "seconds": time.perf_counter() - started,
        "count_seconds": counted,
        "due": due,
        "rescored": outcome.rescored,
        "changed": outcome.changed,
    }


def job_floor() -> dict:
    from bench.floor import rescore_floor
    from scoring.selectors.rules import live_rule_set
    from scoring.services.rulesets import ruleset_export

    document = ruleset_export(live_rule_set())
    started = time.perf_counter()
    parts = rescore_floor(document)
    return {"seconds": time.perf_counter() - started, "parts": parts}


def _latencies(client: Client, urls: list[str], rounds: int) -> dict:
    for url in urls:  # warm caches and connections
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
    samples = []
    for _ in range(rounds):
        for url in urls:
            started = time.perf_counter()
            client.get(url)
            samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "p50_ms": statistics.median(samples),
        "p95_ms": samples[int(0.95 * (len(samples) - 1))],
        "n": len(samples),
    }


def job_kpis(rounds: int = 10) -> dict:
    """Every KPI endpoint and the dashboard page for one period (p95 over all of them), as a
    manager; beside it the page without filters (period "until now") and whether the cube was
    fresh (read) at all. First the cube refresh beat runs every 5 minutes (timed): the jobs
    before this one wrote to the leads, so without it a stale cube would be measured, or the
    direct computation once the cube is older than KPI_CUBE_MAX_AGE_SECONDS."""
    from scoring.kpis import cube

    started = time.perf_counter()
    refreshed = cube.cube_refresh()
    cube_refresh_seconds = time.perf_counter() - started
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(User.objects.get(username="manager"))
    period = "?start=2000-01-01&end=2100-01-01"
    endpoints = (
        "bands",
        "funnel",
        "cycle",
        "qualification",
        "lift",
        "calibration",
        "revenue",
        "band-entries",
        "feedback",
    )
    urls = [f"/api/v1/kpis/{name}/{period}" for name in endpoints] + [f"/kpis/{period}"]
    result = _latencies(client, urls, rounds)
    result["cube_refresh_seconds"] = round(cube_refresh_seconds, 2)
    result["cube_refreshed"] = refreshed
    result["cube_fresh"] = cube.is_fresh()
    result["page_without_filters"] = _latencies(client, ["/kpis/"], max(1, rounds // 3))
    return result


def job_cube_refresh() -> dict:
    """The KPI cube refresh beat runs every 5 minutes, before the page loads are measured."""
    from scoring.kpis import cube

    started = time.perf_counter()
    cube.cube_refresh()
    return {"seconds": time.perf_counter() - started, "cube_fresh": cube.is_fresh()}


def job_lead_list(rounds: int = 10) -> dict:
    manager = Client(HTTP_HOST="127.0.0.1")
    manager.force_login(User.objects.get(username="manager"))
    rep = Client(HTTP_HOST="127.0.0.1")
    rep.force_login(User.objects.get(username="sales1"))
    urls = ["/leads/", "/leads/?band=Hot", "/leads/?band=MQL&persona=Developer", "/leads/?q=acme"]
    result_manager = _latencies(manager, urls, rounds)
    result_rep = _latencies(rep, ["/leads/", "/leads/?band=Warm"], rounds)
    worst = max(result_manager["p95_ms"], result_rep["p95_ms"])
    return {"p95_ms": worst, "manager": result_manager, "sales_rep": result_rep}


def job_preview() -> dict:
    """A draft that changes one rule's points, previewed against the live rule set."""
    from django.utils import timezone

    from scoring.selectors.rules import live_rule_set
    from scoring.services.preview import preview_compute
    from scoring.services.rescore import compiled_rule_set
    from scoring.services.rulesets import ruleset_document, ruleset_import

    live = live_rule_set()
    document = ruleset_document(live)
    document["rules"][0]["points"] = document["rules"][0]["points"] + 7
    draft = ruleset_import(document)
    started = time.perf_counter()
    preview_compute(compiled_rule_set(draft), compiled_rule_set(live), as_of=timezone.now())
    seconds = time.perf_counter() - started
    draft.delete()
    return {"seconds": seconds}


def job_train(max_leads: int = 200_000) -> dict:
    """Both models trained on at most `max_leads` leads (the product's `--max-leads`: the most
    recently created leads of the labelled population)."""
    from scoring.ml.training import train_models

    started = time.perf_counter()
    report = train_models(max_leads=max_leads)
    summary = report.as_json()
    return {
        "seconds": time.perf_counter() - started,
        "n_train": summary["n_train"],
        "n_test": summary["n_test"],
        "leads_used": summary["n_train"] + summary["n_test"],
        "population": summary["population"],
        "roc_auc": {m["name"]: m["roc_auc"] for m in summary["models"]},
    }


def job_score_model() -> dict:
    """The newest trained model (the best of its run by test ROC AUC) activated, then every
    lead's probability computed and stored."""
    from scoring.ml import registry
    from scoring.ml.scoring import score_all
    from scoring.models import Lead, MLModel

    newest = MLModel.objects.filter(status=MLModel.Status.DONE).order_by("-id").first()
    run = MLModel.objects.filter(run_key=newest.run_key, status=MLModel.Status.DONE)
    best = max(run, key=lambda row: (row.metrics or {}).get("overall", {}).get("roc_auc") or 0)
    registry.activate(best)
    started = time.perf_counter()
    scored = score_all()
    return {
        "seconds": time.perf_counter() - started,
        "scored": scored,
        "leads": Lead.objects.count(),
        "algorithm": best.algorithm,
    }


def job_import_csv(n: int = 100_000) -> dict:
    """100,000 new leads from a CSV file in the canonical columns."""
    import csv
    import tempfile

    from integrations.imports import import_file

    path = os.path.join(tempfile.mkdtemp(), "leads.csv")
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "external_id",
                "email",
                "first_name",
                "last_name",
                "title",
                "company",
                "employees",
                "industry",
                "country",
                "plan_interest",
            ]
        )
        for i in range(n):
            writer.writerow(
                [
                    f"imp-{i}",
                    f"imported{i}@bench-import.example",
                    "Ada",
                    "Lovelace",
                    "Engineer",
                    f"Company {i % 5000}",
                    10 + i % 900,
                    "Software",
                    "Germany",
                    ("free", "business", "enterprise")[i % 3],
                ]
            )
    started = time.perf_counter()
    summary = import_file(path, "leads", source="bench")
    seconds = time.perf_counter() - started
    created = getattr(summary, "created", None)
    return {"seconds": seconds, "created": created}


JOBS = {
    "rescore": job_rescore,
    "floor": job_floor,
    "rescore_due": job_rescore_due,
    "kpis": job_kpis,
    "cube_refresh": job_cube_refresh,
    "lead_list": job_lead_list,
    "preview": job_preview,
    "train": job_train,
    "score_model": job_score_model,
    "import_csv": job_import_csv,
}


if __name__ == "__main__":
    name = sys.argv[1]
    result = JOBS[name]()
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))
