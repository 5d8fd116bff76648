"""The KPI cube (scoring.kpis.cube): aggregate tables the dashboard reads instead of scanning
every lead, and a change log that tells the reader whether they still describe the data.

Raw tables without models: only scoring.kpis.cube reads and writes them. The change log gets
one row per statement that writes leads, score history or rescore runs (PostgreSQL:
statement-level triggers, so a bulk rescore adds one row per chunk, not per lead; SQLite:
row-level, the only kind it has, so they write only while the log is empty)."""

from django.db import migrations

TABLES = [
    """CREATE TABLE kpi_cube_cell (
        created_day date NOT NULL, band varchar(60) NOT NULL, score integer NULL,
        converted smallint NOT NULL, disqualified smallint NOT NULL, mql_first smallint NOT NULL,
        stage smallint NOT NULL, leads bigint NOT NULL, revenue double precision NULL,
        with_p bigint NOT NULL, first_created timestamp with time zone NOT NULL)""",
    "CREATE INDEX kpi_cube_cell_day ON kpi_cube_cell (created_day)",
    """CREATE TABLE kpi_cube_cycle (
        created_day date NOT NULL, band varchar(60) NOT NULL, days double precision NOT NULL)""",
    "CREATE INDEX kpi_cube_cycle_day ON kpi_cube_cycle (created_day)",
    """CREATE TABLE kpi_cube_entry (
        created_day date NOT NULL, as_of_day date NOT NULL, week date NOT NULL,
        band varchar(60) NOT NULL, n bigint NOT NULL)""",
    """CREATE TABLE kpi_cube_choice (
        persona varchar(100) NOT NULL, source varchar(120) NOT NULL, owner_id integer NULL)""",
    """CREATE TABLE kpi_cube_state (
        id integer PRIMARY KEY, built_at timestamp with time zone NOT NULL,
        time_zone varchar(64) NOT NULL, last_entry_at timestamp with time zone NULL)""",
]

DROP = [
    "DROP TABLE IF EXISTS kpi_cube_cell",
    "DROP TABLE IF EXISTS kpi_cube_cycle",
    "DROP TABLE IF EXISTS kpi_cube_entry",
    "DROP TABLE IF EXISTS kpi_cube_choice",
    "DROP TABLE IF EXISTS kpi_cube_state",
    "DROP TABLE IF EXISTS kpi_cube_change",
]

WATCHED = ["scoring_lead", "scoring_scorehistory", "scoring_rescorerun"]


def forwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    run = schema_editor.execute
    for sql in TABLES:
        run(sql)
    if vendor == "postgresql":
        run("CREATE TABLE kpi_cube_change (id bigserial PRIMARY KEY)")
        run(
            "CREATE FUNCTION kpi_cube_changed() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN INSERT INTO kpi_cube_change DEFAULT VALUES; RETURN NULL; END $$"
        )
        for table in WATCHED:
            run(
                f"CREATE TRIGGER {table}_kpi_cube AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE"
                f" ON {table} FOR EACH STATEMENT EXECUTE FUNCTION kpi_cube_changed()"
            )
    else:
        run("CREATE TABLE kpi_cube_change (id integer PRIMARY KEY AUTOINCREMENT)")
        for table in WATCHED:
            for event in ("INSERT", "UPDATE", "DELETE"):
                # Row-level, so only when the log is empty: one row says "changed" as well
                # as a million would (SQLite has one writer at a time, so no race).
                run(
                    f"CREATE TRIGGER {table}_kpi_cube_{event.lower()} AFTER {event} ON {table}"
                    " WHEN NOT EXISTS (SELECT 1 FROM kpi_cube_change)"
                    " BEGIN INSERT INTO kpi_cube_change (id) VALUES (NULL); END"
                )


def backwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for table in WATCHED:
        if vendor == "postgresql":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_kpi_cube ON {table}")
        else:
            for event in ("insert", "update", "delete"):
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_kpi_cube_{event}")
    for sql in DROP:
        schema_editor.execute(sql)
    if vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS kpi_cube_changed()")


class Migration(migrations.Migration):
    dependencies = [
        ("scoring", "0007_lead_conversion_band"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
