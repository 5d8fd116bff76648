"""The model probabilities' own table (scoring.ml.probabilities): the bulk write replaces an id
range (binary COPY on PostgreSQL), the real-time write upserts a few leads, clearing empties
it; readers (the rule rescore's column read, the lead API and page) join it from the lead side
without a query per lead; a write marks the KPI cube stale; migration 0010 carries the old
column's values over (and back)."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from scoring.engine import compile_ruleset, parse_ruleset
from scoring.kpis import cube
from scoring.ml.probabilities import (
    RUN_LOCK,
    STAGING,
    Replacement,
    clear_probabilities,
    write_probabilities,
)
from scoring.models import Lead, LeadProbability
from scoring.rule_inputs import LeadSelection, read_lead_columns
from tests.factories import LeadFactory

NAN = np.nan


def stored() -> dict[int, float]:
    return dict(LeadProbability.objects.values_list("lead_id", "probability"))


def ids_of(leads: list[Lead]) -> list[int]:
    return [lead.pk for lead in leads]


@pytest.fixture
def leads(db) -> list[Lead]:
    leads = LeadFactory.create_batch(6)
    write_probabilities(np.array(ids_of(leads)), np.full(6, 0.5))
    return leads


# --- the bulk write: an id range replaced --------------------------------------------------


def test_a_covering_write_replaces_the_range_and_leaves_the_rest_alone(leads):
    a, b, _c, d, e, f = ids_of(leads)
    write_probabilities(np.array([b, d, e]), np.array([1.5, NAN, -0.25]), covering=(b, e))
    # a and f are outside the range; c is in it but not written (its row goes); d's NaN means
    # no probability; values are clipped into [0, 1].
    assert stored() == {a: 0.5, b: 1.0, e: 0.0, f: 0.5}


def test_a_covering_write_stores_exact_values_and_64_bit_ids(db):
    # The binary COPY's encoding: float8 and int8, big-endian, bit for bit.
    big = 2**40 + 3
    values = np.array([0.123456789012345, 1 / 3, 5e-324, 0.999999999999999])
    ids = np.array([big, big + 1, big + 2, big + 7])
    write_probabilities(ids, values, covering=(big, big + 10))
    assert stored() == dict(zip(ids.tolist(), values.tolist(), strict=True))


def test_a_covering_write_of_thousands_of_rows_in_one_chunk(db):
    first = 10**6
    ids = np.arange(first, first + 5000)
    values = (ids % 1000) / 1000.0
    write_probabilities(ids, values, covering=(first, first + 9999))
    write_probabilities(ids[::2], values[::2] / 2, covering=(first, first + 9999))
    got = stored()
    assert len(got) == 2500
    assert got == dict(zip(ids[::2].tolist(), (values[::2] / 2).tolist(), strict=True))


def test_a_covering_write_removes_a_row_left_behind_by_a_lead_deleted_with_raw_sql(leads):
    lead = leads[2]
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM scoring_lead WHERE id = %s", [lead.pk])
    assert lead.pk in stored()  # no constraint to remove it ...
    assert not Lead.objects.filter(probability_row__lead_id=lead.pk).exists()  # ... unseen
    others = [i for i in ids_of(leads) if i != lead.pk]
    write_probabilities(np.array(others), np.full(5, 0.7), covering=(others[0], others[-1]))
    assert stored() == dict.fromkeys(others, 0.7)


def test_an_empty_covering_write_empties_the_range(leads):
    ids = ids_of(leads)
    write_probabilities(np.array([], dtype=np.int64), np.array([]), covering=(ids[1], ids[-1]))
    assert stored() == {ids[0]: 0.5}


def test_a_lead_deleted_through_the_orm_takes_its_probability_with_it(leads):
    leads[0].delete()
    assert leads[0].pk not in stored()
    assert len(stored()) == 5


@pytest.mark.parametrize(
    ("ids", "values", "covering", "message"),
    [
        ([1, 1], [0.1, 0.2], None, "distinct"),
        ([1, 2], [0.1], None, "same shape"),
        ([1, 9], [0.1, 0.2], (1, 5), "covered range"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(leads, ids, values, covering, message):
    before = stored()
    with pytest.raises(ValueError, match=message):
        write_probabilities(np.array(ids), np.array(values), covering=covering)
    assert stored() == before


# --- the real-time write: a few leads upserted ---------------------------------------------


def test_the_real_time_write_inserts_updates_and_removes_only_its_leads(db):
    a, b, c, d = ids_of(LeadFactory.create_batch(4))
    write_probabilities(np.array([a, b]), np.array([0.2, 0.4]))
    assert stored() == {a: 0.2, b: 0.4}
    # b updated, c inserted (clipped), a removed (NaN), d never had one and still has none.
    write_probabilities(np.array([c, b, a, d]), np.array([7.0, 0.45, NAN, NAN]))
    assert stored() == {b: 0.45, c: 1.0}


def test_the_real_time_write_inside_a_transaction_keeps_the_callers_work(db):
    from django.db import transaction

    lead = LeadFactory()
    with transaction.atomic():
        Lead.objects.filter(pk=lead.pk).update(score=42)
        write_probabilities(np.array([lead.pk]), np.array([0.3]))
        write_probabilities(np.array([lead.pk]), np.array([0.6]), covering=(lead.pk, lead.pk))
    lead.refresh_from_db()
    assert (lead.score, lead.model_probability) == (42, 0.6)


def test_clear_removes_every_probability_and_counts_them(leads):
    assert clear_probabilities() == 6
    assert stored() == {}
    assert clear_probabilities() == 0


# --- readers -------------------------------------------------------------------------------

RULES = {
    "name": "Blend",
    "model_weight": 0.5,
    "bands": [{"name": "Cold", "min_score": 0}],
    "rules": [{"kind": "attribute", "field": "employees", "op": "gte", "value": 1, "points": 10}],
}


def test_the_rule_rescore_reads_the_probability_and_nan_where_there_is_none(db):
    with_p, without, also = LeadFactory.create_batch(3)
    write_probabilities(np.array([with_p.pk, also.pk]), np.array([0.25, 0.75]))
    compiled = compile_ruleset(parse_ruleset(RULES))
    by_range = read_lead_columns(compiled, LeadSelection(first_id=with_p.pk, last_id=also.pk))
    assert by_range.ids.tolist() == [with_p.pk, without.pk, also.pk]
    assert by_range.model_probability.dtype == np.float64
    np.testing.assert_array_equal(by_range.model_probability, [0.25, NAN, 0.75])
    by_ids = read_lead_columns(compiled, LeadSelection(ids=(also.pk, without.pk)))
    np.testing.assert_array_equal(by_ids.model_probability, [NAN, 0.75])


def test_the_lead_property_reads_the_row_or_gives_none(db):
    lead = LeadFactory(model_probability=0.42)
    assert Lead.objects.get(pk=lead.pk).model_probability == 0.42
    assert LeadFactory().model_probability is None
    assert Lead().model_probability is None  # unsaved: no query, no row


@pytest.fixture
def ops(role_users) -> APIClient:
    client = APIClient()
    client.force_authenticate(role_users["ops"])
    return client


def _list_queries(client: APIClient) -> tuple[list[dict], int]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/api/v1/leads/", {"page_size": 100})
    assert response.status_code == 200, response.content
    return response.json()["results"], len(queries)


def test_the_lead_list_api_gives_the_probability_without_a_query_per_lead(ops):
    LeadFactory(model_probability=0.1)
    LeadFactory()
    _list_queries(ops)  # the first request also reads the user's roles, cached after it
    few, few_queries = _list_queries(ops)
    for i in range(8):
        LeadFactory(model_probability=i / 10 if i % 3 else None)
    many, many_queries = _list_queries(ops)
    assert len(many) == 10
    assert many_queries == few_queries
    assert sorted(r["model_probability"] or 0 for r in few) == [0, 0.1]
    assert {r["id"]: r["model_probability"] for r in many} == {
        lead.pk: lead.model_probability for lead in Lead.objects.all()
    }


def test_the_lead_detail_api_and_page_show_the_probability_read_with_the_lead(ops, client_as):
    lead = LeadFactory(model_probability=0.42)
    with CaptureQueriesContext(connection) as queries:
        body = ops.get(f"/api/v1/leads/{lead.pk}/").json()
    assert body["model_probability"] == 0.42
    assert _reads_of_the_probability_table(queries) == 1

    with CaptureQueriesContext(connection) as queries:
        page = client_as("ops").get(f"/leads/{lead.pk}/").content.decode()
    assert 'data-testid="model-probability">0.42<' in page
    assert _reads_of_the_probability_table(queries) == 1


def _reads_of_the_probability_table(queries: CaptureQueriesContext) -> int:
    """How many statements read scoring_leadprobability; each must be the lead's own read."""
    reads = [q["sql"] for q in queries.captured_queries if "scoring_leadprobability" in q["sql"]]
    assert all('FROM "scoring_lead"' in sql for sql in reads), reads
    return len(reads)


# --- the KPI cube --------------------------------------------------------------------------


def test_every_kind_of_probability_write_marks_the_kpi_cube_stale(leads):
    ids = np.array(ids_of(leads))
    writes = [
        lambda: write_probabilities(ids, np.full(6, 0.9), covering=(ids[0], ids[-1])),
        lambda: write_probabilities(ids[:1], np.array([0.1])),
        lambda: write_probabilities(ids[:1], np.array([NAN])),
        clear_probabilities,
    ]
    for write in writes:
        assert cube.cube_refresh()
        assert cube.is_fresh()
        write()
        assert not cube.is_fresh()


def test_the_cube_counts_leads_with_a_probability_as_the_direct_reading_does(leads):
    from scoring.kpis import selectors
    from scoring.kpis.filters import KpiFilters

    filters = KpiFilters()
    clear_probabilities()
    write_probabilities(np.array(ids_of(leads)[:4]), np.array([0.1, NAN, 0.3, 0.4]))
    direct = sum(c.with_probability for c in selectors.outcome_cells(filters, cube_reader=None))
    assert direct == 3
    assert cube.cube_refresh()
    reader = cube.CubeReader(filters)
    from_cube = sum(row[-1] for row in reader.outcome_rows())
    assert from_cube == direct


# --- migration 0010 ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_moves_the_column_into_the_table_and_back():
    from django.db.migrations.executor import MigrationExecutor

    before = ("scoring", "0009_scorehistory_asof_index")
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    try:
        executor.migrate([before])
        old = executor.loader.project_state([before]).apps.get_model("scoring", "Lead")
        leads = [
            old.objects.create(email=f"m{i}@example.com", model_probability=p)
            for i, p in enumerate([0.25, None, 1.0])
        ]
        executor = MigrationExecutor(connection)
        executor.migrate([("scoring", "0010_leadprobability")])
        assert stored() == {leads[0].pk: 0.25, leads[2].pk: 1.0}
        LeadProbability.objects.filter(lead_id=leads[2].pk).update(probability=0.5)

        executor = MigrationExecutor(connection)
        executor.migrate([before])
        with connection.cursor() as cursor:
            cursor.execute("SELECT id, model_probability FROM scoring_lead ORDER BY id")
            assert cursor.fetchall() == [
                (leads[0].pk, 0.25),
                (leads[1].pk, None),
                (leads[2].pk, 0.5),
            ]
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(latest)


# --- a full run's new table, swapped in (PostgreSQL) ---------------------------------------


def _has_cube_trigger() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
            [LeadProbability._meta.db_table],
        )
        return cursor.fetchone()[0] == 1


def _staging_exists() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [STAGING])
        return cursor.fetchone()[0] is not None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_full_run_swaps_in_its_table_and_keeps_what_real_time_wrote_meanwhile():
    leads = LeadFactory.create_batch(5)
    a, b, c, d, e = ids_of(leads)
    write_probabilities(np.array([a, b, c, e]), np.array([0.5, 0.5, 0.5, 0.5]))
    replacement = Replacement.begin()
    replacement.write(np.array([a, b]), np.array([0.1, 0.2]))
    # The live table still answers while the run writes its own.
    assert stored() == {a: 0.5, b: 0.5, c: 0.5, e: 0.5}
    # The real-time path writes after the run started: b's and d's values are newer, and so
    # is c's, though unchanged (0.5 again).
    write_probabilities(np.array([b, c, d]), np.array([0.8, 0.5, 0.9]))
    replacement.write(np.array([c, d, e]), np.array([0.3, 0.4, NAN]))
    assert cube.cube_refresh() and cube.is_fresh()
    replacement.finish()
    # a from the run, b, c and d from real time, e: no probability in the run (and none
    # written since it started).
    assert stored() == {a: 0.1, b: 0.8, c: 0.5, d: 0.9}
    assert not _staging_exists()
    assert _has_cube_trigger()
    assert not cube.is_fresh()  # the cube counts leads with a probability
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass"
            " AND indisprimary",
            [LeadProbability._meta.db_table],
        )
        assert cursor.fetchone()[0] == f"{LeadProbability._meta.db_table}_pkey"
    # The swapped-in table works as the model's table for every path.
    write_probabilities(np.array([a]), np.array([0.6]))
    LeadProbability.objects.filter(lead_id=c).delete()
    assert stored() == {a: 0.6, b: 0.8, d: 0.9}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_abandoned_run_leaves_the_live_probabilities_untouched():
    leads = LeadFactory.create_batch(3)
    write_probabilities(np.array(ids_of(leads)), np.array([0.1, 0.2, 0.3]))
    replacement = Replacement.begin()
    replacement.write(np.array(ids_of(leads)), np.array([0.9, 0.9, 0.9]))
    replacement.abandon()
    assert stored() == dict(zip(ids_of(leads), [0.1, 0.2, 0.3], strict=True))
    assert not _staging_exists()
    # A run that died (with its connection, so its advisory lock is gone too) leaves its
    # table behind; the next run starts afresh.
    Replacement.begin().write(np.array(ids_of(leads)[:1]), np.array([0.5]))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s)", [RUN_LOCK])
    assert _staging_exists()
    replacement = Replacement.begin()
    replacement.write(np.array(ids_of(leads)[1:]), np.array([0.7, 0.8]))
    replacement.finish()
    assert stored() == dict(zip(ids_of(leads)[1:], [0.7, 0.8], strict=True))
