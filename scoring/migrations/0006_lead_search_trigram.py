"""Trigram index for the lead queue's search (email, names, company; case-insensitive
"contains"), so a rare word is found without reading every lead. PostgreSQL only: SQLite keeps
its plain scan."""

from django.db import migrations

SEARCH_COLUMNS = ("email", "first_name", "last_name", "company")


def create_search_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    # The expressions match what Django's icontains emits: UPPER(column::text) LIKE UPPER(%s).
    columns = ", ".join(f"(UPPER({c}::text)) gin_trgm_ops" for c in SEARCH_COLUMNS)
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS lead_search_trgm_idx ON scoring_lead USING gin ({columns})"
    )
    # Statistics on the indexed expressions, or the planner guesses thousands of matches and
    # walks the score index instead.
    schema_editor.execute("ANALYZE scoring_lead")


def drop_search_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS lead_search_trgm_idx")


class Migration(migrations.Migration):
    dependencies = [("scoring", "0005_lead_rescore_indexes")]

    operations = [migrations.RunPython(create_search_index, drop_search_index)]
