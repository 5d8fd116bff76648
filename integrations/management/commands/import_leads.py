"""manage.py import_leads FILE [--source S] [--mapping F] [--atomic]"""

from integrations.management.commands._import_command import ImportCommand


class Command(ImportCommand):
    help = "Import leads from CSV/JSONL (upsert by identity or email); prints a JSON summary."
    kind = "leads"
