"""Group scores, group bands and grades of scored leads (the fit x engagement extension of
DESIGN.md §4): rendered here from a `ScoreResult` and written with the score, in the same
UPDATE, by every rescore, bulk and real time alike (`scoring.services.rescore`).

Stored on the lead: `group_scores` `{group: score}`, `group_bands` `{group: band or ""}` and
`grade` (the grid's band names concatenated; "" without a grid or below a grid group's bands).
A rule set without groups leaves `{}`, `{}` and "" (and clears what an earlier one wrote)."""

from __future__ import annotations

import json

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
