"""`manage.py train_model [--label STAGE] [--max-leads N] [--json] [--activate]`: train and
evaluate the predictive models to completion in this process (no worker needed).

--max-leads N (default 200,000; 0 for all) trains on the N most recently created leads of the
labelled population, so time and memory stay bounded on a large database.

With --json it prints ONE JSON object: {"split", "n_train", "n_test", "features", "cutoff",
"excluded": [{"feature", "reason"}], "models": [{"name", "roc_auc", "pr_auc", "brier", "ece",
"lift_top_decile", "calibration", ...}], "rules_roc_auc", ...}. --exclude works for every
feature; --allow FEATURE keeps one the leakage guard would leave out (recorded on the rows).
With --activate the model with the best test ROC AUC becomes active and every lead's
probability is stored."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring.ml import registry
from scoring.ml import scoring as ml_scoring
from scoring.ml.labels import DEFAULT_HORIZON_DAYS, DEFAULT_STAGE, LabelError
from scoring.ml.training import DEFAULT_MAX_LEADS, train_models


class Command(BaseCommand):
    help = "Train the predictive models (logistic regression and gradient boosting) and report."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--label", default=DEFAULT_STAGE, help="stage that counts as converted")
        parser.add_argument("--horizon-days", type=int, default=DEFAULT_HORIZON_DAYS)
        parser.add_argument(
            "--cutoff",
            help="ISO 8601 cut-off time (default: the data's latest creation or stage time "
            "minus the horizon)",
        )
        parser.add_argument(
            "--exclude",
            action="append",
            default=[],
            help="a feature never to use: a field, an attribute, lead_age_days, "
            "days_since_last_activity, events.TYPE[.column], persona, email_domain_type",
        )
        parser.add_argument(
            "--allow",
            action="append",
            default=[],
            help="keep a feature the leakage guard or a connector's outcome list would drop",
        )
        parser.add_argument(
            "--include-doubtful",
            action="store_true",
            help="also use the columns a mapping marks as doubtful",
        )
        parser.add_argument(
            "--max-leads",
            type=int,
            default=DEFAULT_MAX_LEADS,
            help="train on at most this many leads, the most recently created (0: all)",
        )
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("--activate", action="store_true", help="activate the best model")

    def handle(self, *args: Any, **options: Any) -> None:
        cutoff = None
        if options["cutoff"]:
            try:
                cutoff = dt.datetime.fromisoformat(options["cutoff"])
            except ValueError:
                raise CommandError(f"--cutoff {options['cutoff']!r} is not ISO 8601.") from None
            if cutoff.tzinfo is None:
                cutoff = cutoff.replace(tzinfo=dt.UTC)
        if options["max_leads"] < 0:
            raise CommandError("--max-leads must be 0 (all leads) or a positive number.")
        if options["json"]:
            # The JSON object must be the only thing on stdout.
            logging.getLogger("scoring").setLevel(logging.WARNING)
        try:
            report = train_models(
                label_stage=options["label"],
                horizon_days=options["horizon_days"],
                cutoff=cutoff,
                exclude=options["exclude"],
                include_doubtful=options["include_doubtful"],
                max_leads=options["max_leads"] or None,
                allow=options["allow"],
            )
        except LabelError as error:
            raise CommandError(str(error)) from None
        result = report.as_json()
        if options["activate"]:
            best = max(report.rows, key=lambda row: row.metrics["overall"]["roc_auc"] or 0)
            registry.activate(best)
            result["activated"] = best.pk
            result["leads_scored"] = ml_scoring.score_all()
        if options["json"]:
            self.stdout.write(json.dumps(result))
            return
        self.stdout.write(f"label: {report.label}")
        self.stdout.write(
            f"split: {report.split} ({report.n_train} train, {report.n_test} test); "
            f"{len(report.features)} features"
        )
        for model in report.models:
            self.stdout.write(
                f"  #{model['id']} {model['name']}: ROC AUC {model['roc_auc']}, PR AUC "
                f"{model['pr_auc']}, Brier {model['brier']}, ECE {model['ece']}, lift@10% "
                f"{model['lift_top_decile']}; calibration: {model['calibration']}"
            )
        for item in report.exclusions:
            self.stdout.write(f"  excluded {item['feature']}: {item['reason']}")
        self.stdout.write(f"  live rules: ROC AUC {report.rules_roc_auc}")
        if options["activate"]:
            self.stdout.write(f"activated model #{result['activated']}")
