"""What publishing, rolling back or discarding a rule set will do, in one sentence each, for
the confirmation dialogs of the rule pages: leads changing band and newly qualifying (from the
draft's latest finished impact preview), and the MQL times a publish writes or a rollback
leaves in place."""

from __future__ import annotations

from scoring.formatting import count
from scoring.jobs import JobStatus
from scoring.models import Lead, RuleSet


def publish_impact(rule_set: RuleSet) -> str:
    """The publish confirmation: the impact measured by the latest finished preview of the
    draft, or a plain warning that none has run."""
    preview = (
        rule_set.previews.filter(status=JobStatus.DONE, result__isnull=False)
        .order_by("-id")
        .first()
    )
    head = f"Publish “{rule_set.name}” and rescore every lead?"
    if preview is None:
        return (
            f"{head} No impact preview has finished for this draft, so how many leads change "
            "band is unknown. Leads that newly qualify get an MQL time written now, which a "
            "later rollback does not remove."
        )
    result = preview.result
    return (
        f"{head} By preview #{preview.pk} of {count(result.get('leads'))} leads: "
        f"{count(result.get('band_changed'))} change band, "
        f"{count(result.get('crossing_up'))} newly qualify (their MQL time is written now and "
        f"stays even after a rollback), {count(result.get('falling_below'))} stop qualifying."
    )


def rollback_impact(target: RuleSet, live: RuleSet | None) -> str:
    """The rollback confirmation: `target` is republished as a new version; the MQL times
    written while `live` was live stay (a rollback does not unqualify anyone's history)."""
    head = (
        f"Roll back to v{target.version} “{target.name}”? It is republished as a new version "
        "and every lead is rescored."
    )
    if live is None or live.published_at is None:
        return head
    since = live.published_at
    written = Lead.objects.filter(mql_at__gte=since).count()
    return (
        f"{head} {count(written)} lead{'s' if written != 1 else ''} got an MQL time since "
        f"v{live.version} went live ({since:%Y-%m-%d %H:%M}); those MQL times stay. Preview "
        f"v{target.version} first to see how many leads change band."
    )


def discard_impact(rule_set: RuleSet) -> str:
    """The discard confirmation: the draft's edits are lost; nothing live changes."""
    rules = rule_set.rules.count()
    return (
        f"Discard the draft “{rule_set.name}” ({rules} rule{'s' if rules != 1 else ''})? Its "
        "edits are lost; the live rule set and every lead's score stay as they are."
    )
