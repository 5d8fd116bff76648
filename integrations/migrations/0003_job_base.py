"""ImportJob and SyncRun inherit scoring.jobs.Job. Existing rows keep their data: an import's
row counters are renamed, a sync run gets its start time as its creation time, and a complete
sync's "succeeded" becomes "done" (the sync command still prints "succeeded")."""

import django.utils.timezone
from django.db import migrations, models


def forwards(apps, schema_editor):
    SyncRun = apps.get_model("integrations", "SyncRun")
    SyncRun.objects.update(created_at=models.F("started_at"))
    SyncRun.objects.filter(status="succeeded").update(status="done")


def backwards(apps, schema_editor):
    SyncRun = apps.get_model("integrations", "SyncRun")
    SyncRun.objects.filter(status="done").update(status="succeeded")


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0002_sync"),
    ]

    operations = [
        migrations.RenameField("importjob", "rows_done", "progress_done"),
        migrations.RenameField("importjob", "rows_total", "progress_total"),
        migrations.AlterField(
            model_name="importjob",
            name="progress_done",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AlterField(
            model_name="importjob",
            name="progress_total",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="importjob",
            name="heartbeat_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="importjob",
            name="task_args",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name="importjob",
            name="task_name",
            field=models.CharField(blank=True, default="", max_length=200),
        ),
        migrations.AddField(
            model_name="syncrun",
            name="created_at",
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.AddField(
            model_name="syncrun",
            name="progress_done",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="syncrun",
            name="progress_total",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="syncrun",
            name="task_args",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name="syncrun",
            name="task_name",
            field=models.CharField(blank=True, default="", max_length=200),
        ),
        migrations.AlterField(
            model_name="importjob",
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
            model_name="syncrun",
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
                default="running",
                max_length=20,
            ),
        ),
        migrations.RunPython(forwards, backwards),
    ]
