"""Partial expression indexes on the lead attributes through which Salesforce opportunities
find their leads (integrations.outcomes): only converted leads carry these keys, so the indexes
are small and bulk rescores, which never change attributes, keep their HOT updates.
PostgreSQL only; SQLite scans, which is fine at its sizes."""

from django.db import migrations

KEYS = (
    ("lead_sf_conv_opportunity_idx", "salesforce_converted_opportunity_id"),
    ("lead_sf_conv_contact_idx", "salesforce_converted_contact_id"),
    ("lead_sf_conv_account_idx", "salesforce_converted_account_id"),
)


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, key in KEYS:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON scoring_lead ((attributes -> '{key}')) "
            f"WHERE attributes ? '{key}'"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _ in KEYS:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0004_crm_outcomes_and_owners"),
        ("scoring", "0013_lead_lost_stage"),
    ]

    operations = [migrations.RunPython(create, drop)]
