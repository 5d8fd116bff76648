"""`manage.py experiment start|report|stop`: champion/challenger experiments
(docs/experiments.md).

    experiment start --kind ruleset|model|threshold --name NAME
        (--challenger-file RULES.json | --challenger-model ID | --threshold SCORE)
        [--split 0.5] [--metric conversion|sql|bad_lead_rate] [--horizon-days 90]
        [--population new|all] [--min-sample N] [--hypothesis TEXT]
        [--relevant-difference 0.02] [--alpha 0.05]
    experiment report NAME [--json]
    experiment stop NAME [--promote]

The commands rescore in line (the bulk tasks are the API's way), so when they return every
lead's stored score is its arm's (start, population all) or the champion's (stop)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from scoring.management.documents import read_json_document
from scoring.models import Experiment
from scoring.selectors.experiments import experiment_report
from scoring.services.experiments import (
    ExperimentInvalid,
    ExperimentRequest,
    experiment_start,
    experiment_stop,
)


class Command(BaseCommand):
    help = "Start, report on or stop a champion/challenger experiment."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        start = sub.add_parser("start", help="Start an experiment.")
        start.add_argument("--kind", required=True, choices=Experiment.Kind.values)
        start.add_argument("--name", required=True)
        challenger = start.add_mutually_exclusive_group(required=True)
        challenger.add_argument("--challenger-file", help="A rule-set document (ruleset kind).")
        challenger.add_argument("--challenger-model", type=int, help="A model id (model kind).")
        challenger.add_argument("--threshold", type=float, help="Qualifying score (threshold).")
        start.add_argument("--split", type=float, default=0.5, help="The challenger's share.")
        start.add_argument("--metric", default="conversion", choices=Experiment.Metric.values)
        start.add_argument("--horizon-days", type=int, default=90)
        start.add_argument("--population", default="new", choices=Experiment.Population.values)
        start.add_argument("--min-sample", type=int, default=1000, help="Leads per arm.")
        start.add_argument("--hypothesis", default="")
        start.add_argument("--relevant-difference", type=float, default=0.02)
        start.add_argument("--alpha", type=float, default=0.05)
        report = sub.add_parser("report", help="Print an experiment's report.")
        report.add_argument("name")
        report.add_argument("--json", action="store_true", help="One JSON document.")
        stop = sub.add_parser("stop", help="Stop an experiment (all leads to the champion).")
        stop.add_argument("name")
        stop.add_argument("--promote", action="store_true", help="The challenger goes live.")

    def handle(self, *args, **options) -> None:
        action = options["action"]
        if action == "start":
            self._start(options)
        elif action == "report":
            self._report(self._experiment(options["name"]), as_json=options["json"])
        else:
            experiment = self._experiment(options["name"])
            try:
                experiment = experiment_stop(experiment, promote=options["promote"], inline=True)
            except ExperimentInvalid as exc:
                raise CommandError(str(exc)) from None
            summary = {
                "name": experiment.name,
                "status": experiment.status,
                "decision": experiment.final_decision,
            }
            self.stdout.write(json.dumps(summary))

    def _experiment(self, name: str) -> Experiment:
        experiment = Experiment.objects.filter(name=name).first()
        if experiment is None:
            raise CommandError(f"There is no experiment named {name!r}.")
        return experiment

    def _start(self, options: dict[str, Any]) -> None:
        document = None
        if options["challenger_file"]:
            document = read_json_document(options["challenger_file"])
        request = ExperimentRequest(
            name=options["name"],
            kind=options["kind"],
            hypothesis=options["hypothesis"],
            split=options["split"],
            metric=options["metric"],
            horizon_days=options["horizon_days"],
            population=options["population"],
            min_sample=options["min_sample"],
            relevant_difference=options["relevant_difference"],
            alpha=options["alpha"],
            challenger_document=document,
            challenger_model_id=options["challenger_model"],
            threshold=options["threshold"],
        )
        try:
            experiment = experiment_start(request, inline=True)
        except ExperimentInvalid as exc:
            self.stdout.write(json.dumps({"started": False, "errors": exc.errors}))
            raise CommandError(f"{len(exc.errors)} error(s); nothing was started.") from None
        summary = {
            "started": True,
            "name": experiment.name,
            "kind": experiment.kind,
            "challenger_rule_set_version": getattr(experiment.challenger_rule_set, "version", None),
            "leads": experiment.leads.count(),
        }
        self.stdout.write(json.dumps(summary))

    def _report(self, experiment: Experiment, *, as_json: bool) -> None:
        report = experiment_report(experiment)
        if as_json:
            self.stdout.write(json.dumps(report))
            return
        lines = [
            f"{report['name']} ({report['kind']}, {report['status']}), metric {report['metric']}",
        ]
        for arm in report["arms"]:
            lines.append(
                f"  {arm['name']:<10} leads {arm['leads']:>8}  qualified {arm['qualified']:>7}"
                f"  converted {arm['converted']:>7}  rate {_percent(arm['rate'])}"
                f"  95% CI [{_percent(arm['ci'][0])}, {_percent(arm['ci'][1])}]"
            )
        difference = report["difference"]
        lines.append(
            f"  difference {_percent(difference['estimate'])}"
            f"  always-valid {1 - report['alpha']:.0%} CI"
            f" [{_percent(difference['ci'][0])}, {_percent(difference['ci'][1])}]"
        )
        lines.append(f"  decision: {report['decision']}")
        self.stdout.write("\n".join(lines))


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"
