"""manage.py import_events FILE [--source S] [--atomic]"""

from integrations.management.commands._import_command import ImportCommand


class Command(ImportCommand):
    help = "Import events from CSV/JSONL (duplicates ignored); prints a JSON summary."
    kind = "events"
    with_mapping = False
