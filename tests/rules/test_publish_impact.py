"""The confirmation dialogs of publish, rollback and discard say what will happen."""

from __future__ import annotations

import datetime as dt
import html

from scoring.jobs import JobStatus
from scoring.models import PreviewRun
from scoring.selectors.publish_impact import discard_impact, publish_impact, rollback_impact
from scoring.services.rulesets import ruleset_copy, ruleset_publish
from tests.factories import LeadFactory


def confirm_of(page: str, action: str) -> str:
    """The data-confirm text of the form posting to `action`."""
    start = page.index(f'action="{action}"')
    tag = page[start : page.index(">", start)]
    return html.unescape(tag.split('data-confirm="', 1)[1].split('"', 1)[0])


def test_publish_without_a_preview_says_the_impact_is_unknown(draft):
    text = publish_impact(draft)
    assert "No impact preview has finished" in text
    assert "MQL time" in text


def test_publish_states_the_previews_band_changes_and_new_mqls(draft, role_users):
    PreviewRun.objects.create(
        rule_set=draft,
        status=JobStatus.DONE,
        result={"leads": 1200, "band_changed": 340, "crossing_up": 57, "falling_below": 3},
    )
    text = publish_impact(draft)
    assert "1,200 leads: 340 change band, 57 newly qualify" in text
    assert "3 stop qualifying" in text


def test_rollback_counts_the_mql_times_that_stay(live, draft):
    published = ruleset_publish(draft, rescore=False)
    live.refresh_from_db()
    after = published.published_at + dt.timedelta(seconds=1)
    LeadFactory.create_batch(2, mql_at=after)
    LeadFactory(mql_at=published.published_at - dt.timedelta(days=3))
    text = rollback_impact(live, published)
    assert f"Roll back to v{live.version}" in text
    assert f"2 leads got an MQL time since v{published.version} went live" in text
    assert "those MQL times stay" in text


def test_discard_says_nothing_live_changes(draft):
    text = discard_impact(draft)
    assert text.startswith(f"Discard the draft “{draft.name}”")
    assert "live rule set and every lead's score stay" in text


def test_the_pages_put_the_texts_on_the_forms(client_as, live, draft):
    ops = client_as("ops")
    page = ops.get(f"/rules/{draft.pk}/").content.decode()
    assert confirm_of(page, f"/rules/{draft.pk}/publish/") == publish_impact(draft)
    assert confirm_of(page, f"/rules/{draft.pk}/discard/") == discard_impact(draft)
    second = ruleset_publish(ruleset_copy(live), rescore=False)
    live.refresh_from_db()
    index = ops.get("/rules/").content.decode()
    text = confirm_of(index, f"/rules/{live.pk}/rollback/")
    assert text.startswith(f"Roll back to v{live.version}") and f"v{second.version}" in text
    assert "js/rules.js" in index
