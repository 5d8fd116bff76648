"""Writes for sales feedback on leads: a verdict (good / bad) with a reason and a note.

One verdict per author per lead; giving it again edits it. Every change is audited by
simple-history on the Feedback model (who, when, old and new value)."""

from __future__ import annotations

import logging
from typing import Any

from django.db import IntegrityError, transaction

from scoring.models import Feedback, Lead

log = logging.getLogger(__name__)

NOTE_MAX_CHARS = 2000
VERDICTS = frozenset(Feedback.Verdict.values)
REASONS = frozenset(Feedback.Reason.values)


class FeedbackInvalid(ValueError):
    """The feedback was refused; `errors` maps a field name to what is wrong with it."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


def feedback_validate(verdict: Any, reason: Any, note: Any) -> dict[str, str]:
    """The problems with a verdict, reason and note, by field (empty when they are fine).

    The verdict is `good` or `bad`; the reason is one of `Feedback.Reason` and required when the
    verdict is bad (optional when it is good); the note is text of at most NOTE_MAX_CHARS."""
    errors: dict[str, str] = {}
    if verdict not in VERDICTS:
        errors["verdict"] = "Choose good or bad."
    if reason is None:
        reason = ""
    if not isinstance(reason, str) or (reason and reason not in REASONS):
        errors["reason"] = "Unknown reason; choose one from the list."
    elif verdict == Feedback.Verdict.BAD and not reason:
        errors["reason"] = "A bad lead needs a reason."
    if note is not None and not isinstance(note, str):
        errors["note"] = "The note must be text."
    elif note and len(note) > NOTE_MAX_CHARS:
        errors["note"] = f"Keep the note under {NOTE_MAX_CHARS} characters."
    return errors


def feedback_give(
    lead: Lead, author: Any, verdict: str, reason: str | None = "", note: str | None = ""
) -> Feedback:
    """Record `author`'s verdict on `lead`, or edit it when the author already gave one.

    Stores the lead's band and score as they are now (read from the database, not from a
    possibly stale `lead` object), so the feedback review sees the band the rep judged.
    Raises FeedbackInvalid (nothing written) when the input is wrong. Whether the author may
    see the lead is the caller's check."""
    errors = feedback_validate(verdict, reason, note)
    if errors:
        raise FeedbackInvalid(errors)
    values = {
        "verdict": verdict,
        "reason": reason or "",
        "note": (note or "").strip(),
    }
    for attempt in range(2):
        try:
            with transaction.atomic():
                current = Lead.objects.filter(pk=lead.pk).values("band", "score").first()
                if current is None:
                    raise Lead.DoesNotExist(f"lead {lead.pk} no longer exists")
                values.update(band=current["band"], score=current["score"])
                existing = (
                    Feedback.objects.select_for_update()
                    .filter(lead_id=lead.pk, author=author)
                    .first()
                )
                if existing is None:
                    feedback = Feedback.objects.create(lead_id=lead.pk, author=author, **values)
                    created = True
                else:
                    for field, value in values.items():
                        setattr(existing, field, value)
                    existing.save()
                    feedback, created = existing, False
            break
        except IntegrityError:
            # Two submissions by the same author raced to create; the second edits instead.
            if attempt:
                raise
    log.info(
        "feedback.given lead=%s author=%s verdict=%s reason=%s created=%s",
        lead.pk,
        author.pk,
        verdict,
        values["reason"] or "-",
        created,
    )
    return feedback
