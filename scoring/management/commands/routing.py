"""`manage.py routing import FILE` and `manage.py routing export`: the routing rules document
(docs/acting.md). An invalid document prints every error with its JSON path and reason, and
nothing is written."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from scoring.management.documents import read_json_document
from scoring.models import RoutingConfig
from scoring.services.routing import RoutingInvalid, routing_import


class Command(BaseCommand):
    help = "Import or export the lead routing rules (JSON)."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        importing = sub.add_parser("import", help="Store a routing document (the new version).")
        importing.add_argument("file", help="Path of the JSON document ('-' for stdin).")
        sub.add_parser("export", help="Print the routing document in force.")

    def handle(self, *args, **options) -> None:
        if options["action"] == "export":
            config = RoutingConfig.objects.order_by("-version").first()
            if config is None:
                raise CommandError("No routing rules have been imported yet.")
            self.stdout.write(json.dumps(config.document, indent=2))
            return
        file = options["file"]
        document = read_json_document(file)
        try:
            config = routing_import(document, source="import")
        except RoutingInvalid as exc:
            errors = [{"path": e.path, "error": e.message} for e in exc.errors]
            self.stdout.write(json.dumps({"imported": False, "errors": errors}))
            raise CommandError(f"{len(errors)} error(s); nothing was written.") from None
        rules = len(document.get("rules", []))
        self.stdout.write(json.dumps({"imported": True, "version": config.version, "rules": rules}))
