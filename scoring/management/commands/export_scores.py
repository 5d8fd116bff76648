"""`manage.py export_scores FILE`: every lead's current score as CSV, streamed."""

from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand

from scoring.csv_safety import csv_lines
from scoring.selectors.leads import SCORE_EXPORT_COLUMNS, score_export_rows


class Command(BaseCommand):
    help = f"Write {', '.join(SCORE_EXPORT_COLUMNS)} as CSV, one row per lead, by score."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="Output path ('-' for stdout).")

    def handle(self, *args, **options) -> None:
        path = options["file"]
        out = sys.stdout if path == "-" else open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        lines = -1  # the header is not a lead
        try:
            for line in csv_lines(score_export_rows()):
                out.write(line)
                lines += 1
        finally:
            if out is not sys.stdout:
                out.close()
        if path != "-":
            self.stdout.write(json.dumps({"file": path, "rows": lines}))
