"""SQLite remakes a table for most column changes, which drops its triggers: 0021 and 0022
(grades and accounts on the lead) remade scoring_lead, so the KPI cube's change-log triggers
of 0008 (and 0010's, 0011's) are made again here for every watched table. PostgreSQL keeps
triggers through ALTER TABLE; nothing to do there."""

from django.db import migrations

WATCHED = ("scoring_lead", "scoring_leadprobability", "scoring_scorehistory", "scoring_rescorerun")


def restore_cube_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        return
    for table in WATCHED:
        for event in ("INSERT", "UPDATE", "DELETE"):
            name = f"{table}_kpi_cube_{event.lower()}"
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {name}")
            schema_editor.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON {table}"
                " WHEN NOT EXISTS (SELECT 1 FROM kpi_cube_change)"
                " BEGIN INSERT INTO kpi_cube_change (id) VALUES (NULL); END"
            )


class Migration(migrations.Migration):
    dependencies = [
        ("scoring", "0024_ruleset_change_note"),
    ]

    operations = [
        migrations.RunPython(restore_cube_triggers, migrations.RunPython.noop),
    ]
