"""`seed_demo`: the demo company, its users and a live starter rule set, scored.

The data, the users and the published rule set are written in one transaction, so a failure
leaves the database as it was. Scoring runs afterwards through the ordinary bulk rescore
(`rescore_all(inline=True)`); if it fails, `manage.py rescore --all` finishes the job.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import Any, TypedDict

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.utils import timezone

from scoring.models import Lead, RuleSet
from scoring.roles import ADMIN, MANAGER, MARKETING_OPS, SALES
from scoring.selectors.rules import live_rule_set

from .generator import generate
from .writer import write_demo_data

logger = logging.getLogger(__name__)

STARTER_RULESET_PATH = Path(__file__).with_name("starter_ruleset.json")
# A draft beside the live starter rules: the same signals split into fit and engagement
# groups (grade A1..D3), survey answers and feature usage matched with `where` operators, and
# an account roll-up. Preview or publish it from /rules/.
GRADED_RULESET_PATH = Path(__file__).with_name("graded_ruleset.json")

# (username, first name, last name, role). The first two sales reps own most leads, so that
# `sales1` and `sales2` have full queues; the others make the team look real.
DEMO_USERS: tuple[tuple[str, str, str, str], ...] = (
    ("ops", "Olivia", "Park", MARKETING_OPS),
    ("sales1", "Sam", "Carter", SALES),
    ("sales2", "Alex", "Morgan", SALES),
    ("sales3", "Jordan", "Lee", SALES),
    ("sales4", "Taylor", "Nguyen", SALES),
    ("manager", "Maria", "Gonzalez", MANAGER),
    ("admin", "Ada", "Byron", ADMIN),
)


class DemoDataExists(Exception):
    """The database already has leads; the demo company goes only into an empty one."""


class SeedSummary(TypedDict):
    skipped: bool
    leads: int
    identities: int
    events: int
    users: int
    rule_set_version: int | None
    scored: int
    seconds: float


def starter_ruleset_document() -> dict[str, Any]:
    """The starter rule set (DESIGN.md §4 JSON) that fits the demo company's data."""
    return json.loads(STARTER_RULESET_PATH.read_text(encoding="utf-8"))


def graded_ruleset_document() -> dict[str, Any]:
    """The demo's fit x engagement rule set (a draft seed_demo leaves for people to try)."""
    return json.loads(GRADED_RULESET_PATH.read_text(encoding="utf-8"))


def demo_users_ensure() -> dict[str, User]:
    """Create the demo users that do not exist yet, with the password `DEMO_PASSWORD`, and put
    each in its role's group. Existing users keep their password (a real admin who happens to
    be called `admin` is not reset)."""
    roles = {role for _, _, _, role in DEMO_USERS}
    groups = {role: Group.objects.get_or_create(name=role)[0] for role in roles}
    users: dict[str, User] = {}
    for username, first_name, last_name, role in DEMO_USERS:
        user, created = User.objects.get_or_create(
            username=username,
            defaults={
                "first_name": first_name,
                "last_name": last_name,
                "email": f"{username}@demo.example.com",
            },
        )
        if created:
            user.set_password(settings.DEMO_PASSWORD)
            if role == ADMIN:
                user.is_staff = True
                user.is_superuser = True
            user.save()
        user.groups.add(groups[role])
        users[username] = user
    return users


def seed_demo(
    *,
    n_leads: int = 5000,
    seed: int = 0,
    events_per_lead: float = 10.0,
    if_empty: bool = False,
    now: dt.datetime | None = None,
    history_months: int = 12,
) -> SeedSummary:
    """Load the demo company into an empty database and score it.

    With `if_empty`, does nothing (and says so: `skipped`) when leads exist; without it,
    raises `DemoDataExists` then. Raises ValueError for a negative size. The starter rule set
    is imported and published only when no rule set is live; otherwise the live one scores."""
    if n_leads < 0 or events_per_lead < 0:
        raise ValueError("the number of leads and of events per lead must not be negative")
    started = time.perf_counter()
    existing = Lead.objects.count()
    if existing:
        if if_empty:
            logger.info("demo.seed.skipped existing_leads=%s", existing)
            return SeedSummary(
                skipped=True,
                leads=0,
                identities=0,
                events=0,
                users=0,
                rule_set_version=getattr(live_rule_set(), "version", None),
                scored=0,
                seconds=round(time.perf_counter() - started, 3),
            )
        raise DemoDataExists(
            f"The database already has {existing} leads; seed_demo loads the demo company into an "
            "empty database only (use --if-empty to skip quietly)."
        )

    with transaction.atomic():
        users = demo_users_ensure()
        owners = [users[username].pk for username, _, _, role in DEMO_USERS if role == SALES]
        data = generate(
            n_leads, seed=seed, events_per_lead=events_per_lead, n_owners=len(owners), now=now
        )
        written = write_demo_data(data, owners)
        rule_set = live_rule_set() or _publish_starter_rules(users["ops"])

    scored = 0
    if n_leads:
        from scoring.services.rescore import rescore_all

        # A score history as if the company had been scoring all along: one rescore at the end
        # of each past month, then one now. The KPIs read the band a lead had *before* it
        # converted from this history; without it every past conversion would be "Unscored".
        current = now or timezone.now()
        for months_ago in range(history_months, 0, -1):
            past = current - dt.timedelta(days=30 * months_ago)
            rescore_all(rule_set=rule_set, as_of=past, user=users["ops"], inline=True)
        run = rescore_all(rule_set=rule_set, as_of=now, user=users["ops"], inline=True)
        scored = run.leads_scored
    summary = SeedSummary(
        skipped=False,
        leads=written["leads"],
        identities=written["identities"],
        events=written["events"],
        users=len(users),
        rule_set_version=rule_set.version,
        scored=scored,
        seconds=round(time.perf_counter() - started, 3),
    )
    logger.info(
        "demo.seed.finished leads=%s events=%s scored=%s seconds=%s",
        summary["leads"],
        summary["events"],
        summary["scored"],
        summary["seconds"],
    )
    return summary


def _publish_starter_rules(ops: User) -> RuleSet:
    from scoring.services.rulesets import ruleset_import, ruleset_publish

    # Published without the automatic (Celery) rescore: seed_demo rescores inline right after.
    draft = ruleset_import(starter_ruleset_document(), user=ops)
    published = ruleset_publish(draft, user=ops, rescore=False)
    ruleset_import(graded_ruleset_document(), user=ops)
    return published
