"""The model probability moves off the wide leads table into `scoring_leadprobability`
(lead_id, probability, computed_at), so the bulk scoring writes narrow rows (a new table by
COPY, swapped in) instead of updating a million lead rows and their indexes.

The existing probabilities are copied over before the column is dropped. The KPI cube counts
leads with a probability, so the new table gets the change-log trigger of migration 0008 (the
same kind: statement-level on PostgreSQL, row-level while the log is empty on SQLite)."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

TABLE = "scoring_leadprobability"

COPY_FORWARD = (
    f"INSERT INTO {TABLE} (lead_id, probability, computed_at)"
    " SELECT id, model_probability, CURRENT_TIMESTAMP FROM scoring_lead"
    " WHERE model_probability IS NOT NULL"
)
COPY_BACKWARD = (
    "UPDATE scoring_lead SET model_probability ="
    f" (SELECT lp.probability FROM {TABLE} lp WHERE lp.lead_id = scoring_lead.id)"
    f" WHERE id IN (SELECT lead_id FROM {TABLE})"
)


def add_cube_trigger(apps, schema_editor):
    # As 0008 does for the tables it watches; kpi_cube_changed() is 0008's function.
    run = schema_editor.execute
    if schema_editor.connection.vendor == "postgresql":
        run(
            f"CREATE TRIGGER {TABLE}_kpi_cube AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE"
            f" ON {TABLE} FOR EACH STATEMENT EXECUTE FUNCTION kpi_cube_changed()"
        )
        return
    for event in ("INSERT", "UPDATE", "DELETE"):
        # Row-level, so only when the log is empty: one row says "changed" as well as a
        # million would (SQLite has one writer at a time, so no race).
        run(
            f"CREATE TRIGGER {TABLE}_kpi_cube_{event.lower()} AFTER {event} ON {TABLE}"
            " WHEN NOT EXISTS (SELECT 1 FROM kpi_cube_change)"
            " BEGIN INSERT INTO kpi_cube_change (id) VALUES (NULL); END"
        )


def drop_cube_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_kpi_cube ON {TABLE}")
        return
    for event in ("insert", "update", "delete"):
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_kpi_cube_{event}")


class Migration(migrations.Migration):
    dependencies = [
        ("scoring", "0009_scorehistory_asof_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="LeadProbability",
            fields=[
                (
                    "lead",
                    models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="probability_row",
                        serialize=False,
                        to="scoring.lead",
                    ),
                ),
                ("probability", models.FloatField()),
                ("computed_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
        ),
        migrations.RunSQL(COPY_FORWARD, COPY_BACKWARD),
        migrations.RemoveField(
            model_name="lead",
            name="model_probability",
        ),
        # After the copy: the copied rows describe what the cube already counted.
        migrations.RunPython(add_cube_trigger, drop_cube_trigger),
    ]
