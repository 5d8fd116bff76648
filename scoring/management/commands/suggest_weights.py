"""`manage.py suggest_weights [--model ID] [--max-rules N] [--json]`: recompute the suggested
rules of a logistic model (default: the latest trained one) on the training leads it was
trained on, and score the draft on its test leads.

--json prints ONE JSON object: {"rules": [...], "test_roc_auc", "model_test_roc_auc", "model"},
both ROC AUCs on the same test split. The suggestion is stored on the model's row, so
"Apply as new draft" on /models/ applies exactly these rules."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring.ml.labels import LabelError
from scoring.ml.suggest import DEFAULT_MAX_RULES
from scoring.ml.training import LOGISTIC, suggest_weights
from scoring.models import MLModel


class Command(BaseCommand):
    help = (
        "Suggest rules (points) from a trained logistic model and measure them on its test split."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", type=int, help="a logistic model's id (default: latest)")
        parser.add_argument(
            "--max-rules",
            type=int,
            default=DEFAULT_MAX_RULES,
            help=f"at most this many rules (default {DEFAULT_MAX_RULES})",
        )
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        done = MLModel.objects.filter(algorithm=LOGISTIC, status=MLModel.Status.DONE)
        if options["model"]:
            row = done.filter(pk=options["model"]).first()
            if row is None:
                raise CommandError(f"--model {options['model']}: no trained logistic model.")
        else:
            row = done.order_by("-pk").first()
            if row is None:
                raise CommandError("No trained logistic model yet: run train_model first.")
        if options["json"]:
            logging.getLogger("scoring").setLevel(logging.WARNING)
        try:
            suggestion = suggest_weights(row, max_rules=options["max_rules"])
        except (ValueError, LabelError) as error:
            raise CommandError(str(error)) from None
        result = {
            "rules": suggestion["document"]["rules"],
            "test_roc_auc": suggestion["test_roc_auc"],
            "model_test_roc_auc": suggestion["model_test_roc_auc"],
            "model": row.pk,
        }
        if options["json"]:
            self.stdout.write(json.dumps(result))
            return
        self.stdout.write(
            f"model #{row.pk}: draft test ROC AUC {result['test_roc_auc']}, "
            f"logistic regression {result['model_test_roc_auc']} (same test leads)"
        )
        for rule in result["rules"]:
            self.stdout.write(f"  {rule['points']:>4}  {rule['name']}")
