"""Half of each lead page left free, so a full rescore can rewrite every lead of a page in
place (a HOT update: no new entry in any of the lead table's indexes) when its score and band
stay the same. A lead row with its breakdown is about 900 bytes: at fillfactor 70 a page held
six of them and room for two new versions, so most of a full rescore's updates were not HOT
and wrote to all eight indexes (the search index's trigrams included)."""

from django.db import migrations


def _set_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE scoring_lead SET (fillfactor = 50)")


def _previous_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE scoring_lead SET (fillfactor = 70)")


class Migration(migrations.Migration):
    dependencies = [("scoring", "0013_lead_lost_stage")]

    operations = [migrations.RunPython(_set_fillfactor, _previous_fillfactor, elidable=False)]
