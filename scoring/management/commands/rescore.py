"""`manage.py rescore --all [--as-of ISO8601]`: a bulk rescore, run to completion here.
`manage.py rescore --due [--as-of ISO8601]`: the leads whose score may have changed with time
alone since their last scoring, rescored to completion here (what the beat job runs)."""

from __future__ import annotations

import json
import time

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from scoring.services.rescore import NoLiveRuleSet, rescore_all, rescore_due


class Command(BaseCommand):
    help = (
        "Rescore every lead (--all) or the leads due for a time-based rescore (--due) with the"
        " live rule set and print a one-line JSON summary."
    )

    def add_arguments(self, parser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--all", action="store_true", help="Every lead.")
        which.add_argument(
            "--due",
            action="store_true",
            help="The leads whose score, band or persona may have changed with time alone.",
        )
        parser.add_argument(
            "--as-of",
            help="ISO 8601 time with zone that fixes 'now' for windows, decay and inactivity.",
        )

    def handle(self, *args, **options) -> None:
        as_of = None
        if options.get("as_of"):
            as_of = parse_datetime(options["as_of"])
            if as_of is None or as_of.tzinfo is None:
                raise CommandError(
                    "--as-of must be an ISO 8601 time with a zone, e.g. 2026-01-31T00:00:00Z"
                )
        started = time.perf_counter()
        if options["due"]:
            try:
                outcome = rescore_due(as_of)
            except NoLiveRuleSet as exc:
                raise CommandError(str(exc)) from None
            due_summary = {
                "rule_set_version": outcome.rule_set_version,
                "as_of": outcome.as_of.isoformat(),
                "chunks": outcome.chunks,
                "rescored": outcome.rescored,
                "changed": outcome.changed,
                "seconds": round(time.perf_counter() - started, 3),
            }
            self.stdout.write(json.dumps(due_summary))
            return
        try:
            run = rescore_all(as_of=as_of, inline=True)
        except NoLiveRuleSet as exc:
            raise CommandError(str(exc)) from None
        summary = {
            "run": run.pk,
            "status": run.status,
            "rule_set_version": run.rule_set.version,
            "as_of": run.as_of.isoformat(),
            "chunks": run.progress_total,
            "scored": run.leads_scored,
            "changed": run.leads_changed,
            "seconds": round(time.perf_counter() - started, 3),
        }
        self.stdout.write(json.dumps(summary))
