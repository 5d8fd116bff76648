"""manage.py create_source_key NAME: a new write key for the Segment-compatible endpoints
(/segment/v1/), printed as the last line. Only its SHA-256 digest is stored, so this is the one
time it is shown; the integrations page lists the keys (name and prefix) and revokes them."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.segment.services import SourceKeyInvalid, source_key_create


class Command(BaseCommand):
    help = "Create a source key (a Segment write key) named NAME and print it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")

    def handle(self, *args: Any, name: str, **options: Any) -> None:
        try:
            row, key = source_key_create(name)
        except SourceKeyInvalid as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Source key {row.name!r} (prefix {row.prefix}; use it as the Segment write key; "
            "it is not stored and cannot be shown again):"
        )
        self.stdout.write(key)
