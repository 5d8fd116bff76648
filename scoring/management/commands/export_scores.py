"""`manage.py export_scores FILE`: every lead's current score as CSV, streamed."""

from __future__ import annotations

import csv
import json
import sys

from django.core.management.base import BaseCommand

from scoring.selectors import score_export_rows

COLUMNS = ["email", "external_id", "persona", "score", "band", "rule_set_version", "breakdown"]


class Command(BaseCommand):
    help = "Write email, external_id, persona, score, band, rule_set_version, breakdown as CSV."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="Output path ('-' for stdout).")

    def handle(self, *args, **options) -> None:
        path = options["file"]
        out = sys.stdout if path == "-" else open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        count = 0
        try:
            writer = csv.writer(out)
            writer.writerow(
                [
                    "email",
                    "external_id",
                    "persona",
                    "score",
                    "band",
                    "rule_set_version",
                    "breakdown",
                ]
            )
            for row in score_export_rows():
                writer.writerow(row)
                count += 1
        finally:
            if out is not sys.stdout:
                out.close()
        if path != "-":
            self.stdout.write(json.dumps({"file": path, "rows": count}))
