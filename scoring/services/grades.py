"""Group scores, group bands and grades of scored leads (the fit x engagement extension of
DESIGN.md §4): written beside the score by every rescore, bulk and real time alike, from the
same `ScoreResult`, set-based.

Stored on the lead: `group_scores` `{group: score}`, `group_bands` `{group: band or ""}` and
`grade` (the grid's band names concatenated; "" without a grid or below a grid group's bands).
A rule set without groups leaves `{}`, `{}` and "" (and clears what an earlier one wrote)."""

from __future__ import annotations

import json

import numpy as np
from django.db import connection

from leadscoring.db import copy_in, is_postgres, temp_table
from scoring.engine import ScoreResult


def group_columns(result: ScoreResult) -> tuple[list[str], list[str], list[str]]:
    """Per lead: its group scores and group bands as JSON object texts, and its grade."""
    n = result.n
    if result.group_scores is None:
        return ["{}"] * n, ["{}"] * n, [""] * n
    names = [json.dumps(name) for name in result.group_names]
    # Rendered column by column (a few groups), joined per lead: no dict per lead.
    score_parts = [
        [f"{name}: {value}" for value in result.group_scores[:, g].tolist()]
        for g, name in enumerate(names)
    ]
    band_parts = [
        [f"{name}: {json.dumps(band or '')}" for band in result.group_bands[:, g].tolist()]
        for g, name in enumerate(names)
    ]
    scores = ["{" + ", ".join(parts) + "}" for parts in zip(*score_parts, strict=True)]
    bands = ["{" + ", ".join(parts) + "}" for parts in zip(*band_parts, strict=True)]
    grades = [grade or "" for grade in result.grades.tolist()]
    return scores, bands, grades


def dense_ids(ids: np.ndarray) -> bool:
    """Whether ascending `ids` fill most of their range (a bulk chunk), so a range condition
    reads little besides them; a few real-time ids far apart do not."""
    return int(ids[-1]) - int(ids[0]) + 1 <= 4 * int(ids.shape[0])


def write_group_results(ids: np.ndarray, result: ScoreResult) -> None:
    """Store the group scores, group bands and grade of the leads `ids` (ascending, the
    order of `result`), in the caller's transaction. One COPY and one UPDATE on PostgreSQL,
    one executemany on SQLite; leads whose values did not change are not rewritten."""
    if not ids.shape[0]:
        return
    scores, bands, grades = group_columns(result)
    if result.group_scores is None:
        # The common case: no groups. Only leads that still hold an older rule set's groups
        # are touched.
        stale = "(grade <> '' OR group_scores <> %s OR group_bands <> %s)"
        with connection.cursor() as cursor:
            if dense_ids(ids):
                cursor.execute(
                    "UPDATE scoring_lead SET group_scores = %s, group_bands = %s, grade = ''"
                    f" WHERE id BETWEEN %s AND %s AND {stale}",
                    ["{}", "{}", int(ids[0]), int(ids[-1]), "{}", "{}"],
                )
            else:
                # A few leads far apart (real time): by id, not over the range between them.
                cursor.executemany(
                    "UPDATE scoring_lead SET group_scores = %s, group_bands = %s, grade = ''"
                    f" WHERE id = %s AND {stale}",
                    [("{}", "{}", i, "{}", "{}") for i in ids.tolist()],
                )
        return
    rows = list(zip(ids.tolist(), scores, bands, grades, strict=True))
    if is_postgres():
        with (
            temp_table(
                "group_buffer", "(id bigint, group_scores jsonb, group_bands jsonb, grade text)"
            ) as table,
            connection.cursor() as cursor,
        ):
            with copy_in(cursor, table, ["id", "group_scores", "group_bands", "grade"]) as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(
                f"UPDATE scoring_lead AS l SET group_scores = t.group_scores,"
                f" group_bands = t.group_bands, grade = t.grade FROM {table} t"
                " WHERE l.id = t.id AND l.id BETWEEN %s AND %s AND (l.grade <> t.grade"
                " OR l.group_scores <> t.group_scores OR l.group_bands <> t.group_bands)",
                [int(ids[0]), int(ids[-1])],
            )
        return
    with connection.cursor() as cursor:
        cursor.executemany(
            "UPDATE scoring_lead SET group_scores = %s, group_bands = %s, grade = %s WHERE id = %s",
            [(s, b, g, i) for i, s, b, g in rows],
        )
