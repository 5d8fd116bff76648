"""The KPI rollup: each converted lead's band and score just before it converted, stored on
the lead, so the dashboard reads a column instead of searching the score history of every
converter on every request.

`conversion_bands_refresh()` recomputes them set-based, in one statement, for every converted
lead whose stored value is missing or out of date. It runs after each bulk rescore (a rescore
of the past can add history before a conversion) and periodically (conversions arrive through
imports, syncs and the API). Until a lead's value is refreshed, the dashboard falls back to the
history search for that lead, so the numbers never depend on the refresh having run.

The KPI cube (scoring.kpis.cube) is rebuilt after these columns: by the periodic task itself,
and enqueued as that task after a rescore run."""

from __future__ import annotations

import logging

from django.db import connection, transaction

from leadscoring.db import is_postgres
from scoring.jobs import dispatch

logger = logging.getLogger(__name__)

_POSTGRES = """
UPDATE scoring_lead AS l
SET conversion_band = COALESCE(f.band, ''), conversion_score = f.score,
    conversion_band_at = l.converted_at
FROM (
    SELECT c.id, hb.band, hb.score
    FROM scoring_lead c
    LEFT JOIN LATERAL (
        SELECT h.band, h.score FROM scoring_scorehistory h
        WHERE h.lead_id = c.id AND h.as_of < c.converted_at
        ORDER BY h.as_of DESC, h.id DESC LIMIT 1
    ) hb ON TRUE
    WHERE c.converted_at IS NOT NULL
) f
WHERE l.id = f.id
  AND (l.conversion_band_at IS DISTINCT FROM l.converted_at
       OR l.conversion_band IS DISTINCT FROM COALESCE(f.band, '')
       OR l.conversion_score IS DISTINCT FROM f.score)
"""

_LAST_ROW = """(SELECT h.{column} FROM scoring_scorehistory h
    WHERE h.lead_id = scoring_lead.id AND h.as_of < scoring_lead.converted_at
    ORDER BY h.as_of DESC, h.id DESC LIMIT 1)"""

_GENERIC = f"""
UPDATE scoring_lead
SET conversion_band = COALESCE({_LAST_ROW.format(column="band")}, ''),
    conversion_score = {_LAST_ROW.format(column="score")},
    conversion_band_at = converted_at
WHERE converted_at IS NOT NULL
"""


def conversion_bands_refresh() -> int:
    """Recompute the band before conversion of every converted lead; returns the rows changed
    (PostgreSQL) or touched (elsewhere)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_POSTGRES if is_postgres() else _GENERIC)
        changed = cursor.rowcount
    logger.info("kpis.rollup.refreshed leads=%s", changed)
    _cube_refresh_after()
    return changed


REFRESH_TASK = "scoring.tasks.kpi_rollup_refresh_task"


def _cube_refresh_after() -> None:
    """The KPI cube (scoring.kpis.cube) is computed from the columns refreshed above, so it
    follows them: inline in the periodic refresh task, and as that task, enqueued, when a
    rescore run calls this (building the cube takes seconds at 1M leads, which the run's
    worker should not spend). Until the cube is refreshed the dashboard computes directly."""
    from celery import current_task

    from scoring.kpis.cube import cube_refresh

    if current_task and current_task.name == REFRESH_TASK:
        cube_refresh()
        return
    # A broker outage must not fail the rescore run: dispatch only logs it, and the periodic
    # refresh rebuilds the cube anyway.
    dispatch(REFRESH_TASK)
