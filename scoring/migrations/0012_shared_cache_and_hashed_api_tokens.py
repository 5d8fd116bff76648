"""The shared cache table, and API tokens hashed at rest.

The database cache (the default when CACHE_URL names no Redis) needs its table. The API tokens
of DRF's authtoken app were stored in plain text; each one becomes a django-rest-knox token
(a SHA-512 digest and a short prefix), so clients keep working with the key they have, and the
plain-text table is dropped."""

from django.core.management.commands.createcachetable import Command as CreateCacheTable
from django.db import migrations

CACHE_TABLE = "leadscoring_cache"
PLAINTEXT_TABLE = "authtoken_token"


def create_cache_table(apps, schema_editor):
    command = CreateCacheTable()
    command.verbosity = 0
    command.create_table(schema_editor.connection.alias, CACHE_TABLE, dry_run=False)


def drop_cache_table(apps, schema_editor):
    schema_editor.execute(f"DROP TABLE IF EXISTS {schema_editor.quote_name(CACHE_TABLE)}")


def hash_plaintext_tokens(apps, schema_editor):
    from knox.crypto import hash_token
    from knox.settings import CONSTANTS

    connection = schema_editor.connection
    if PLAINTEXT_TABLE not in connection.introspection.table_names():
        return
    AuthToken = apps.get_model("knox", "AuthToken")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, user_id, created FROM {PLAINTEXT_TABLE}")  # noqa: S608
        rows = cursor.fetchall()
    AuthToken.objects.bulk_create(
        AuthToken(
            digest=hash_token(key),
            token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH],
            user_id=user_id,
            created=created,
            expiry=None,
        )
        for key, user_id, created in rows
    )
    schema_editor.execute(f"DROP TABLE {schema_editor.quote_name(PLAINTEXT_TABLE)}")


class Migration(migrations.Migration):
    dependencies = [
        ("scoring", "0011_job_base"),
        ("knox", "0009_extend_authtoken_field"),
    ]

    operations = [
        migrations.RunPython(create_cache_table, drop_cache_table),
        # Irreversible on purpose: the plain-text keys are gone once hashed.
        migrations.RunPython(hash_plaintext_tokens, migrations.RunPython.noop),
    ]
