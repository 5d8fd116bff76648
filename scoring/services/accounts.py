"""Accounts: which company each lead belongs to, and the account score rolled up from its
contacts' scores by the live rule set's `account` (DESIGN.md §4 extension).

A lead's account is its CRM account when the CRM named one (Salesforce `ConvertedAccountId` /
an opportunity's `AccountId`, kept as the attribute `salesforce_converted_account_id`; a
HubSpot company association, kept as `hubspot_company_id`), else its business email domain;
free-mail addresses never form an account. Both steps run in every rescore for the leads it
scored, set-based (one read, bulk writes), and a finished bulk run rolls every account up once
more, so accounts whose contacts were spread over chunks scored in parallel end up exact."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
from django.db import connection
from django.utils import timezone

from scoring.engine import AccountRollup, business_domain, roll_up_accounts
from scoring.models import Account, Lead
from scoring.services.grades import dense_ids

logger = logging.getLogger(__name__)

# Attribute keys under which CRM syncs keep the account a lead belongs to, in priority order.
CRM_ACCOUNT_ATTRIBUTES = (
    ("salesforce", "salesforce_converted_account_id"),
    ("hubspot", "hubspot_company_id"),
)


def account_key(email: str | None, attributes: object) -> tuple[str, str, str] | None:
    """(key, source, external id or domain) of the account a lead belongs to, or None."""
    if isinstance(attributes, dict):
        for source, attribute in CRM_ACCOUNT_ATTRIBUTES:
            value = attributes.get(attribute)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
                external = str(value).strip()
                return f"{source}:{external}", source, external
    domain = business_domain(email)
    if domain is None:
        return None
    return f"domain:{domain}", "domain", domain


def assign_accounts(lead_ids: np.ndarray) -> set[int]:
    """Point each of these leads at its account (creating accounts as needed); returns the
    accounts whose contacts may have changed (old and new), for the roll-up."""
    ids = {int(i) for i in np.asarray(lead_ids).tolist()}
    if not ids:
        return set()
    ordered = np.array(sorted(ids), dtype=np.int64)
    leads = (
        Lead.objects.filter(id__gte=int(ordered[0]), id__lte=int(ordered[-1]))
        if dense_ids(ordered)
        else Lead.objects.filter(id__in=ordered.tolist())
    )
    rows = leads.values_list("id", "email", "company", "attributes", "account_id")
    wanted: dict[int, tuple[str, str, str] | None] = {}
    current: dict[int, int | None] = {}
    company: dict[str, str] = {}
    for lead_id, email, company_name, attributes, account_id in rows.iterator(chunk_size=5000):
        if lead_id not in ids:
            continue
        key = account_key(email, attributes)
        wanted[lead_id] = key
        current[lead_id] = account_id
        if key is not None and company_name and key[0] not in company:
            company[key[0]] = company_name
    keys = {key for key in wanted.values() if key is not None}
    known = dict(Account.objects.filter(key__in=[k[0] for k in keys]).values_list("key", "id"))
    # Sorted: concurrent chunks insert shared keys in one order, so they cannot deadlock.
    missing = sorted(k for k in keys if k[0] not in known)
    if missing:
        Account.objects.bulk_create(
            [
                Account(
                    key=key,
                    source=source,
                    external_id=external if source != "domain" else "",
                    domain=external if source == "domain" else "",
                    name=company.get(key) or external,
                )
                for key, source, external in missing
            ],
            ignore_conflicts=True,  # a concurrent rescore may create the same account
        )
        known.update(
            Account.objects.filter(key__in=[k[0] for k in missing]).values_list("key", "id")
        )
    changes = []
    touched: set[int] = set()
    for lead_id, key in wanted.items():
        target = None if key is None else known[key[0]]
        if target != current[lead_id]:
            changes.append((target, lead_id))
            touched.update(a for a in (target, current[lead_id]) if a is not None)
        elif target is not None:
            touched.add(target)
    if changes:
        with connection.cursor() as cursor:
            cursor.executemany("UPDATE scoring_lead SET account_id = %s WHERE id = %s", changes)
    return touched


def roll_up(rollup: AccountRollup | None, account_ids: Iterable[int] | None = None) -> int:
    """Recompute the contact counts, score and band of these accounts (all when None) from
    their contacts as stored now; returns how many accounts were written. Without a roll-up
    in the rule set, accounts keep counts but no score."""
    only = None if account_ids is None else sorted(set(account_ids))
    if only is not None and not only:
        return 0
    sql = "SELECT account_id, score FROM scoring_lead WHERE account_id IS NOT NULL"
    params: list[int] = []
    if only is not None:
        sql += f" AND account_id IN ({', '.join(['%s'] * len(only))})"
        params = only
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    account_of = np.array([r[0] for r in rows], dtype=np.int64)
    scores = np.array([np.nan if r[1] is None else r[1] for r in rows], dtype=np.float64)
    ids = np.unique(np.concatenate([account_of, np.array(only or [], dtype=np.int64)]))
    index = np.searchsorted(ids, account_of)
    m = ids.shape[0]
    contacts = np.bincount(index, minlength=m)
    scored = np.bincount(index[~np.isnan(scores)], minlength=m)
    if rollup is not None:
        result = roll_up_accounts(rollup, index, scores, m)
        values, bands = result.scores, result.bands
    else:
        values, bands = np.full(m, np.nan), np.full(m, None, dtype=object)
    now = timezone.now()
    updates = [
        (
            None if np.isnan(v) else int(v),
            b or "",
            int(c),
            int(s),
            now,
            int(a),
        )
        for a, v, b, c, s in zip(
            ids.tolist(), values.tolist(), bands.tolist(), contacts, scored, strict=True
        )
    ]
    with connection.cursor() as cursor:
        cursor.executemany(
            "UPDATE scoring_account SET score = %s, band = %s, contact_count = %s,"
            " scored_contacts = %s, scored_at = %s WHERE id = %s",
            updates,
        )
        if only is None:
            # Accounts that lost every contact.
            cursor.execute(
                "UPDATE scoring_account SET score = NULL, band = '', contact_count = 0,"
                " scored_contacts = 0 WHERE contact_count > 0 AND NOT EXISTS (SELECT 1 FROM"
                " scoring_lead l WHERE l.account_id = scoring_account.id)"
            )
    return len(updates)


def accounts_after_rescore(rollup: AccountRollup | None, lead_ids: np.ndarray) -> None:
    """In a rescore's transaction: the scored leads' accounts, then those accounts' roll-up."""
    touched = assign_accounts(lead_ids)
    roll_up(rollup, touched)


def accounts_refresh(rollup: AccountRollup | None) -> int:
    """Every account rolled up again (after a bulk run's last chunk)."""
    written = roll_up(rollup, None)
    logger.info("accounts.refreshed accounts=%s", written)
    return written
