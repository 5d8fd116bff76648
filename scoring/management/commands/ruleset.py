"""`manage.py ruleset import FILE [--publish]` and `manage.py ruleset export [--version N]`."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from scoring.engine import RuleSetInvalid
from scoring.management.documents import read_json_document
from scoring.models import RuleSet
from scoring.selectors.rules import live_rule_set
from scoring.services.rulesets import ruleset_export, ruleset_import


class Command(BaseCommand):
    help = "Import or export a rule set as the JSON document of DESIGN.md §4."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        importing = sub.add_parser("import", help="Store a rule-set document as a draft.")
        importing.add_argument("file", help="Path of the JSON document ('-' for stdin).")
        importing.add_argument("--publish", action="store_true", help="Publish it (goes live).")
        exporting = sub.add_parser("export", help="Print a rule set's document.")
        exporting.add_argument("--version", type=int, help="Published version (default: live).")

    def handle(self, *args, **options) -> None:
        if options["action"] == "import":
            self._import(options["file"], options["publish"])
        else:
            self._export(options.get("version"))

    def _import(self, file: str, publish: bool) -> None:
        document = read_json_document(file)
        try:
            rule_set = ruleset_import(document, publish=publish)
        except RuleSetInvalid as exc:
            errors = [{"path": e.path, "error": e.message} for e in exc.errors]
            self.stdout.write(json.dumps({"imported": False, "errors": errors}))
            raise CommandError(f"{len(errors)} error(s); nothing was written.") from None
        rule_set.refresh_from_db()
        summary = {
            "imported": True,
            "rule_set_id": rule_set.pk,
            "name": rule_set.name,
            "status": rule_set.status,
            "version": rule_set.version,
            "rules": rule_set.rules.count(),
        }
        self.stdout.write(json.dumps(summary))

    def _export(self, version: int | None) -> None:
        if version is None:
            rule_set = live_rule_set()
            if rule_set is None:
                raise CommandError("No rule set is live; pass --version N.")
        else:
            rule_set = RuleSet.objects.filter(version=version).first()
            if rule_set is None:
                raise CommandError(f"There is no rule set version {version}.")
        self.stdout.write(json.dumps(ruleset_export(rule_set), indent=2))
