"""manage.py rotate_secrets: re-encrypt every stored connection secret with the first key of
FIELD_ENCRYPTION_KEYS. Put the new key first, keep the old ones after it, run this, then
remove the old keys."""

from __future__ import annotations

import json

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from integrations.config import rotate_connection_secrets


class Command(BaseCommand):
    help = "Re-encrypt connection secrets with the first FIELD_ENCRYPTION_KEYS key."

    def handle(self, *args, **options) -> None:
        try:
            rotated = rotate_connection_secrets()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps({"rotated": rotated}))
