"""Every job model inherits scoring.jobs.Job: one set of statuses, progress as done of total,
heartbeat, task name and arguments. Existing rows keep their data: a rescore run's chunk
counters are renamed, a fraction of progress becomes thousandths, and a training run's
"training" status becomes "running"."""

import django.utils.timezone
from django.db import migrations, models

SCALE = 1000  # scoring.jobs.PROGRESS_SCALE, frozen here


def restore_cube_triggers(apps, schema_editor):
    # SQLite remakes scoring_rescorerun for these column changes, which drops the change-log
    # triggers of migration 0008 (kpi_cube_changed); PostgreSQL keeps them.
    if schema_editor.connection.vendor == "postgresql":
        return
    table = "scoring_rescorerun"
    for event in ("INSERT", "UPDATE", "DELETE"):
        name = f"{table}_kpi_cube_{event.lower()}"
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {name}")
        schema_editor.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON {table}"
            " WHEN NOT EXISTS (SELECT 1 FROM kpi_cube_change)"
            " BEGIN INSERT INTO kpi_cube_change (id) VALUES (NULL); END"
        )


def fractions_to_thousandths(apps, schema_editor):
    for name in ("PreviewRun", "MLModel"):
        model = apps.get_model("scoring", name)
        model.objects.update(
            progress_done=models.functions.Round(models.F("progress") * SCALE),
            progress_total=SCALE,
        )
    apps.get_model("scoring", "MLModel").objects.filter(status="training").update(status="running")


def thousandths_to_fractions(apps, schema_editor):
    for name in ("PreviewRun", "MLModel"):
        model = apps.get_model("scoring", name)
        model.objects.filter(progress_total__gt=0).update(
            progress=models.F("progress_done") * 1.0 / models.F("progress_total")
        )
    apps.get_model("scoring", "MLModel").objects.filter(status="running").update(status="training")


class Migration(migrations.Migration):
    dependencies = [
        ("scoring", "0010_leadprobability"),
    ]

    operations = [
        # Backwards, the table is remade again after this step's forward counterpart.
        migrations.RunPython(migrations.RunPython.noop, restore_cube_triggers),
        migrations.RenameField("rescorerun", "chunks_done", "progress_done"),
        migrations.RenameField("rescorerun", "chunks_total", "progress_total"),
        migrations.AlterField(
            model_name="rescorerun",
            name="progress_done",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AlterField(
            model_name="rescorerun",
            name="progress_total",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="mlmodel",
            name="heartbeat_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="mlmodel",
            name="progress_done",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="mlmodel",
            name="progress_total",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="mlmodel",
            name="started_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="mlmodel",
            name="task_args",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name="mlmodel",
            name="task_name",
            field=models.CharField(blank=True, default="", max_length=200),
        ),
        migrations.AddField(
            model_name="previewrun",
            name="heartbeat_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="previewrun",
            name="progress_done",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="previewrun",
            name="progress_total",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="previewrun",
            name="task_args",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name="previewrun",
            name="task_name",
            field=models.CharField(blank=True, default="", max_length=200),
        ),
        migrations.AddField(
            model_name="rescorechunk",
            name="created_at",
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.AddField(
            model_name="rescorechunk",
            name="finished_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="rescorechunk",
            name="heartbeat_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="rescorechunk",
            name="progress_done",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="rescorechunk",
            name="progress_total",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="rescorechunk",
            name="started_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="rescorechunk",
            name="task_args",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name="rescorechunk",
            name="task_name",
            field=models.CharField(blank=True, default="", max_length=200),
        ),
        migrations.AddField(
            model_name="rescorerun",
            name="heartbeat_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="rescorerun",
            name="task_args",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name="rescorerun",
            name="task_name",
            field=models.CharField(blank=True, default="", max_length=200),
        ),
        migrations.AlterField(
            model_name="mlmodel",
            name="status",
            field=models.CharField(
                choices=[
                    ("queued", "Queued"),
                    ("running", "Running"),
                    ("done", "Done"),
                    ("failed", "Failed"),
                    ("rolled_back", "Rolled back (atomic, rows rejected)"),
                    ("partial", "Partial (continues)"),
                    ("rate_limited", "Rate limited (retrying)"),
                    ("paused", "Paused (daily API limit)"),
                    ("abandoned", "Abandoned (worker stopped)"),
                ],
                default="queued",
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="previewrun",
            name="status",
            field=models.CharField(
                choices=[
                    ("queued", "Queued"),
                    ("running", "Running"),
                    ("done", "Done"),
                    ("failed", "Failed"),
                    ("rolled_back", "Rolled back (atomic, rows rejected)"),
                    ("partial", "Partial (continues)"),
                    ("rate_limited", "Rate limited (retrying)"),
                    ("paused", "Paused (daily API limit)"),
                    ("abandoned", "Abandoned (worker stopped)"),
                ],
                default="queued",
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="rescorechunk",
            name="status",
            field=models.CharField(
                choices=[
                    ("queued", "Queued"),
                    ("running", "Running"),
                    ("done", "Done"),
                    ("failed", "Failed"),
                    ("rolled_back", "Rolled back (atomic, rows rejected)"),
                    ("partial", "Partial (continues)"),
                    ("rate_limited", "Rate limited (retrying)"),
                    ("paused", "Paused (daily API limit)"),
                    ("abandoned", "Abandoned (worker stopped)"),
                ],
                default="queued",
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="rescorerun",
            name="status",
            field=models.CharField(
                choices=[
                    ("queued", "Queued"),
                    ("running", "Running"),
                    ("done", "Done"),
                    ("failed", "Failed"),
                    ("rolled_back", "Rolled back (atomic, rows rejected)"),
                    ("partial", "Partial (continues)"),
                    ("rate_limited", "Rate limited (retrying)"),
                    ("paused", "Paused (daily API limit)"),
                    ("abandoned", "Abandoned (worker stopped)"),
                ],
                default="queued",
                max_length=20,
            ),
        ),
        migrations.RunPython(fractions_to_thousandths, thousandths_to_fractions),
        migrations.RemoveField(model_name="mlmodel", name="progress"),
        migrations.RemoveField(model_name="previewrun", name="progress"),
        migrations.RunPython(restore_cube_triggers, migrations.RunPython.noop),
    ]
