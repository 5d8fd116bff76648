"""The shared shape of `import_leads` and `import_events`: parse arguments, run the import
service in this process, print its one-line JSON summary."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.imports import import_file_recorded


class ImportCommand(BaseCommand):
    kind = "leads"
    with_mapping = True

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="a .csv file, or .jsonl (one JSON object per line)")
        parser.add_argument(
            "--source",
            help="the system the external ids come from (default: the mapping's, else 'csv')",
        )
        if self.with_mapping:
            parser.add_argument(
                "--mapping", help="a mapping JSON file, or the name of a shipped mapping"
            )
        parser.add_argument(
            "--atomic",
            action="store_true",
            help="import nothing unless every row is valid",
        )
        parser.add_argument(
            "--delimiter",
            help="the CSV delimiter (one character, or 'tab'); sniffed by default from "
            "comma, semicolon and tab",
        )
        if self.kind == "leads":
            parser.add_argument(
                "--id-column",
                help="'row' numbers the rows as external ids (a file without an id column); "
                "a column name reads the external id from that column",
            )

    def handle(self, *args: Any, **options: Any) -> None:
        summary = import_file_recorded(
            options["file"],
            self.kind,
            source=options.get("source"),
            mapping=options.get("mapping"),
            atomic=options["atomic"],
            delimiter=options.get("delimiter"),
            id_column=options.get("id_column"),
        )
        self.stdout.write(json.dumps(summary.as_dict(), ensure_ascii=False))
        if summary.status != "done":
            # The summary above says why; the exit status lets scripts notice.
            raise CommandError(summary.error or "rows were rejected; nothing was imported")
