"""`make bench`: builds a fresh PostgreSQL database with the demo generator, then measures each
path of DESIGN.md §7 and writes bench/results.json and bench/results.md.

Defaults: 1,000,000 leads, 10 events per lead, 40 rules; `--quick` (make bench QUICK=1) uses
100,000 leads. Timings are medians of `--repeat` runs, with min and max as the spread."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench"


def run_job(name: str, env: dict[str, str]) -> dict:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.jobs", name],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"bench job {name} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def vacuum(env: dict[str, str]) -> None:
    """`VACUUM (ANALYZE)` of the bench database, untimed, before each bulk job: what
    autovacuum does between full rescores on a production server (each leaves a dead version
    of every lead), so no job pays for the garbage of the one before it. Here, not left to
    autovacuum: a server may run without it (this project's CI machine does)."""
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")


def recreate_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def prepare(env: dict[str, str], leads: int, events_per_lead: float, rules: int) -> dict:
    """Migrate, generate the demo company at scale, publish the benchmark rule set."""
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    script = f"""
import json, time
import django
django.setup()
from django.contrib.auth.models import Group, User
from scoring.demo.seed import DEMO_USERS
from scoring.demo.writer import generate_and_write
from scoring.services.rulesets import ruleset_import
from bench.ruleset import bench_ruleset
owners = []
for username, first, last, role in DEMO_USERS:
    user = User.objects.create_user(username, password="bench-only")
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    if role == "sales":
        owners.append(user.pk)
started = time.perf_counter()
summary = generate_and_write({leads}, seed=1, events_per_lead={events_per_lead}, owners=owners)
generate_seconds = time.perf_counter() - started
ruleset_import(bench_ruleset({rules}), publish=False)
from scoring.models import RuleSet
from scoring.services.rulesets import ruleset_publish
ruleset_publish(RuleSet.objects.get(), rescore=False)
from django.db import connection
with connection.cursor() as cursor:
    # What autovacuum does to freshly loaded tables (PostgreSQL 13+ vacuums after inserts):
    # statistics, and the visibility map that lets per-chunk event reads be index-only.
    cursor.execute("VACUUM (ANALYZE)")
print(json.dumps({{"leads": summary["leads"], "events": summary["events"], "seconds": generate_seconds}}))
"""
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "leadscoring.settings"},
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"data generation failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


# Groups of jobs `--only` can pick; "model" is training and then scoring every lead.
GROUPS = ("rescore", "kpis", "lead_list", "preview", "live", "model", "import", "pageload")


def summarise(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--events-per-lead", type=float, default=10.0)
    parser.add_argument("--rules", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="100,000 leads")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--database", default="leadscoring_bench")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--ingest-batches", type=int, default=100, help="batches of 1,000 events")
    parser.add_argument("--samples", type=int, default=40, help="real-time latency samples")
    parser.add_argument(
        "--only",
        default=",".join(GROUPS),
        help=f"comma-separated groups of jobs to run, of: {', '.join(GROUPS)} (default: all)",
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    if not only <= set(GROUPS):
        parser.error(f"--only takes {', '.join(GROUPS)}")
    if args.quick:
        args.leads = 100_000

    recreate_database(args.admin_url, args.database)
    base = args.admin_url.rsplit("/", 1)[0]
    env = {
        **os.environ,
        "DATABASE_URL": f"{base}/{args.database}",
        "DEBUG": "true",
        "CELERY_BROKER_URL": os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/11"),
        "LOG_LEVEL": "WARNING",
    }
    started = time.perf_counter()
    data = prepare(env, args.leads, args.events_per_lead, args.rules)
    print(
        f"generated {data['leads']} leads, {data['events']} events in {data['seconds']:.1f} s",
        flush=True,
    )

    results: list[dict] = [
        {
            "name": "demo data generation (COPY)",
            "value": round(data["seconds"], 2),
            "unit": "s",
            "target": None,
            "leads": data["leads"],
            "events": data["events"],
        },
    ]
    rescore_runs, floor_runs, rescore_rss, floor_rss = [], [], [], []
    for _ in range(args.repeat if "rescore" in only else 0):
        vacuum(env)
        floor = run_job("floor", env)
        floor_runs.append(floor["seconds"])
        floor_parts = floor["parts"]
        floor_rss.append(floor["peak_rss_mb"])
        vacuum(env)
        product = run_job("rescore", env)
        rescore_runs.append(product["seconds"])
        rescore_rss.append(product["peak_rss_mb"])
        print(f"rescore {product['seconds']:.1f} s, floor {floor['seconds']:.1f} s", flush=True)
    if "rescore" in only:
        r, f = summarise(rescore_runs), summarise(floor_runs)
        rescore_row = {
            "name": "full rescore (read features, score, write back)",
            "value": round(r["median"], 2),
            "unit": "s",
            "target": "<= 30 s at 1,000,000; within 2x of floor; within 3x of model scoring",
            "floor": round(f["median"], 2),
            "ratio": round(r["median"] / f["median"], 2),
            "spread": [round(r["min"], 2), round(r["max"], 2)],
            "floor_spread": [round(f["min"], 2), round(f["max"], 2)],
            "peak_rss_mb": round(max(rescore_rss)),
            "floor_parts": floor_parts,
        }
        results.append(rescore_row)
    if "kpis" in only:
        _kpis(args, env, results)
    if "lead_list" in only:
        _lead_list(args, env, results)
    if "preview" in only:
        _preview(args, env, results)
    if "live" in only:
        _live(args, env, results)
    if "model" in only:
        _model(args, env, results)
        if "rescore" in only:
            # Both read the same leads' columns and events in the same run.
            model_seconds = results[-1]["value"]
            rescore_row["model_scoring"] = model_seconds
            rescore_row["model_ratio"] = round(rescore_row["value"] / model_seconds, 2)
    if "pageload" in only:
        _pageload(args, env, results)
    if "rescore" in only:
        # After every other reader of the leads (the import's new leads come after it): the
        # due run rescores as of 30 days ahead, so it leaves scores and history
        # dated in the future, which every later job would see (the KPI cube cannot serve a
        # period up to now that holds history after it).
        vacuum(env)
        due = run_job("rescore_due", env)
        results.append(
            {
                # The count in the name, so the table shows it.
                "name": (
                    f"due rescore as of 30 days after the full rescore ({due['due']:,} of"
                    f" {data['leads']:,} leads due)"
                ),
                "value": round(due["seconds"], 2),
                "unit": "s",
                "target": "priced beside the full rescore, with the share of leads due",
                "due": due["due"],
                "due_share": round(due["due"] / max(data["leads"], 1), 3),
                "changed": due["changed"],
                "full_rescore": rescore_row["value"],
                "peak_rss_mb": round(due["peak_rss_mb"]),
            }
        )
    if "import" in only:
        _import(args, env, results)
    if only != set(GROUPS):
        results = _merge_earlier(Path(args.out) / "results.json", results)
    _write(args, data, results, started)
    return 0


def _merge_earlier(path: Path, results: list[dict]) -> list[dict]:
    """A run of some groups (`--only`) keeps the earlier run's rows for the others, marked as
    such, so the table stays whole."""
    if not path.exists():
        return results

    def key(item: dict) -> str:
        # Without its parenthesised details, which may hold counts of this run.
        return item["name"].split(" (")[0]

    fresh = {key(item): item for item in results}
    merged = []
    for item in json.loads(path.read_text())["results"]:
        if key(item) in fresh:
            merged.append(fresh.pop(key(item)))
        else:
            merged.append({**item, "earlier_run": True})
    return merged + list(fresh.values())


def _kpis(args: argparse.Namespace, env: dict[str, str], results: list[dict]) -> None:
    kpis = [run_job("kpis", env) for _ in range(args.repeat)]
    results.append(
        {
            "name": "KPI dashboard data p95",
            "value": round(statistics.median(k["p95_ms"] for k in kpis), 1),
            "unit": "ms",
            "target": "< 500",
            "spread": [
                round(min(k["p95_ms"] for k in kpis), 1),
                round(max(k["p95_ms"] for k in kpis), 1),
            ],
            # What beat does every 5 minutes, timed before each measurement.
            "cube_refresh_seconds": round(
                statistics.median(k["cube_refresh_seconds"] for k in kpis), 2
            ),
            "cube_read": all(k["cube_fresh"] for k in kpis),
        }
    )
    results.append(
        {
            "name": "KPI cube refresh (beat, every 5 minutes)",
            "value": results[-1]["cube_refresh_seconds"],
            "unit": "s",
            "target": None,
        }
    )


def _lead_list(args: argparse.Namespace, env: dict[str, str], results: list[dict]) -> None:
    pages = [run_job("lead_list", env) for _ in range(args.repeat)]
    results.append(
        {
            "name": "lead list page p95 (filters, sorting)",
            "value": round(statistics.median(p["p95_ms"] for p in pages), 1),
            "unit": "ms",
            "target": "< 200",
            "spread": [
                round(min(p["p95_ms"] for p in pages), 1),
                round(max(p["p95_ms"] for p in pages), 1),
            ],
        }
    )


def _pageload(args: argparse.Namespace, env: dict[str, str], results: list[dict]) -> None:
    # Headless Chromium against gunicorn: the load event with the cache off, server beside.
    from bench.pageload import measure

    # The jobs before this one wrote to the leads: as beat would have, the KPI cube is
    # refreshed first, so the KPI page reads it (a page computing from a million leads is the
    # fallback for a stale cube, not the page users get).
    vacuum(env)
    run_job("cube_refresh", env)
    try:
        pages = measure(env, loads=max(5, args.samples // 2))
    except Exception as error:  # a page that does not load is a result, not a lost run
        results.append(
            {
                "name": "page loads in headless Chromium",
                "value": None,
                "unit": "ms",
                "target": "< 1000",
                "error": str(error).splitlines()[0][:200],
            }
        )
        return
    for name, timing in pages.items():
        results.append(
            {
                "name": f"{name} load in headless Chromium p95 (load event, no cache)",
                "value": timing["p95_ms"],
                "unit": "ms",
                "target": "< 1000",
                "median_ms": timing["median_ms"],
                "server_p95_ms": timing["server_p95_ms"],
                "complete_p95_ms": timing["complete_p95_ms"],
                "kilobytes_per_load": timing["kilobytes_per_load"],
            }
        )


def _preview(args: argparse.Namespace, env: dict[str, str], results: list[dict]) -> None:
    preview = [run_job("preview", env) for _ in range(args.repeat)]
    p = summarise([x["seconds"] for x in preview])
    results.append(
        {
            "name": "impact preview of a draft",
            "value": round(p["median"], 2),
            "unit": "s",
            "target": "< 15",
            "spread": [round(p["min"], 2), round(p["max"], 2)],
            "peak_rss_mb": round(max(x["peak_rss_mb"] for x in preview)),
        }
    )


def _live(args: argparse.Namespace, env: dict[str, str], results: list[dict]) -> None:
    # Live servers: gunicorn with 2 workers and a real Celery worker on the broker.
    from bench.live import measure

    live = measure(env, env["DATABASE_URL"], batches=args.ingest_batches, samples=args.samples)
    results.append(
        {
            "name": "event ingest through the REST API, batches of 1,000",
            "value": round(live["events_per_second"]),
            "unit": "events/s",
            "target": ">= 20000",
        }
    )
    results.append(
        {
            "name": "ingest backlog rescored by one worker",
            "value": round(live["backlog_seconds"], 1),
            "unit": "s",
            "target": None,
            "leads": live["backlog_leads"],
        }
    )
    results.append(
        {
            "name": "one event in -> new score stored, p95",
            "value": round(live["realtime_p95_ms"], 1),
            "unit": "ms",
            "target": "< 300",
            "p50": round(live["realtime_p50_ms"], 1),
        }
    )


def _model(args: argparse.Namespace, env: dict[str, str], results: list[dict]) -> None:
    # Training reads at most 200,000 leads (train_model --max-leads, the most recent of the
    # labelled population); scoring covers every lead.
    vacuum(env)
    trained = run_job("train", env)
    results.append(
        {
            "name": f"model training on {trained['leads_used']:,} leads (both models)",
            "value": round(trained["seconds"], 2),
            "unit": "s",
            "target": "< 60 at 200,000",
            "peak_rss_mb": round(trained["peak_rss_mb"]),
            "population": trained["population"],
            "roc_auc": trained["roc_auc"],
        }
    )
    # Each run is a fresh process: it loads the artifact (and its compiled trees) as a newly
    # started worker would.
    scored = []
    for _ in range(args.repeat):
        vacuum(env)
        scored.append(run_job("score_model", env))
    s = summarise([x["seconds"] for x in scored])
    results.append(
        {
            "name": f"scoring {scored[0]['scored']:,} leads with the active model",
            "value": round(s["median"], 2),
            "unit": "s",
            "target": "< 15 at 1,000,000 (default install, no compiler)",
            "spread": [round(s["min"], 2), round(s["max"], 2)],
            "peak_rss_mb": round(max(x["peak_rss_mb"] for x in scored)),
            "algorithm": scored[0]["algorithm"],
        }
    )


def _import(args: argparse.Namespace, env: dict[str, str], results: list[dict]) -> None:
    # Last: the import adds 100,000 leads that the other paths must not see.
    imported = run_job("import_csv", env)
    results.append(
        {
            "name": "CSV import of 100,000 leads",
            "value": round(imported["seconds"], 2),
            "unit": "s",
            "target": "< 10",
            "peak_rss_mb": round(imported["peak_rss_mb"]),
        }
    )


def _write(args: argparse.Namespace, data: dict, results: list[dict], started: float) -> None:
    machine = {
        "cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "leads": data["leads"],
        "events": data["events"],
        "rules": args.rules,
        "repeat": args.repeat,
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "postgres": _server_settings(args.admin_url),
    }
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(
        json.dumps({"machine": machine, "results": results}, indent=2)
    )
    lines = [
        f"Machine: {machine['cores']} cores, {machine['memory_gb']} GB; {machine['leads']:,} leads, "
        f"{machine['events']:,} events, {machine['rules']} rules; medians of {machine['repeat']} runs (min–max).",
        "PostgreSQL: " + ", ".join(f"{k} {v}" for k, v in machine["postgres"].items()) + ".",
        "",
        "| path | value | target | floor | ratio | model scoring | ratio | spread | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for item in results:
        value = (
            item.get("note", "not measured")
            if item["value"] is None
            else f"{item['value']} {item['unit']}"
        )
        if item.get("complete_p95_ms") is not None:
            value += f" (server {item['server_p95_ms']}, complete {item['complete_p95_ms']})"
        spread = "–".join(str(v) for v in item.get("spread", [])) or ""
        rss = f"{item['peak_rss_mb']} MB" if item.get("peak_rss_mb") is not None else ""
        lines.append(
            f"| {item['name']}{' (earlier run)' if item.get('earlier_run') else ''} | {value} | {item.get('target') or ''} | "
            f"{item.get('floor', '')} | {item.get('ratio', '')} | "
            f"{item.get('model_scoring', '')} | {item.get('model_ratio', '')} | {spread} | {rss} |"
        )
    lines += [
        "",
        "Peak RSS is each bulk job's own process (`ru_maxrss`); the target is < 1500 MB.",
        "The full rescore's ratios: to the floor (bench/floor.py, the same work written by hand)"
        " and to model scoring of the same leads, both measured in the same run.",
    ]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


# The settings a bulk rescore's speed depends on (docs/operations.md), recorded with the run.
SERVER_SETTINGS = ("server_version", "shared_buffers", "max_wal_size", "checkpoint_timeout")


def _server_settings(admin_url: str) -> dict[str, str]:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        return {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in SERVER_SETTINGS}


if __name__ == "__main__":
    sys.exit(main())
