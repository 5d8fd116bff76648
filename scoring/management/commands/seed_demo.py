"""`manage.py seed_demo [--leads N] [--seed S] [--events-per-lead F] [--if-empty]`: the demo
company (leads, events, identities, funnel), its users and a live, applied starter rule set.
Prints a one-line JSON summary."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from scoring.demo.seed import DemoDataExists, seed_demo


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses NaN
        raise ValueError(text)
    return value


class Command(BaseCommand):
    help = "Load a synthetic B2B company with demo users and a live starter rule set."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--leads", type=_non_negative_int, default=5000, help="Number of leads (5000)."
        )
        parser.add_argument(
            "--seed", type=int, default=0, help="Random seed; the same seed gives the same data."
        )
        parser.add_argument(
            "--events-per-lead",
            type=_non_negative_float,
            default=10.0,
            help="Mean number of behavioural events per lead (10).",
        )
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Do nothing when the database already has leads (used by `make run`).",
        )

    def handle(self, *args, **options) -> None:
        try:
            summary = seed_demo(
                n_leads=options["leads"],
                seed=options["seed"],
                events_per_lead=options["events_per_lead"],
                if_empty=options["if_empty"],
            )
        except DemoDataExists as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps(summary))
