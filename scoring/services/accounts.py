"""Accounts: which company each lead belongs to, and the account score rolled up from its
contacts' scores by the live rule set's `account` (DESIGN.md §4 extension).

A lead's account is its CRM account when the CRM named one (Salesforce `ConvertedAccountId` /
an opportunity's `AccountId`, kept as the attribute `salesforce_converted_account_id`; a
HubSpot company association, kept as `hubspot_company_id`), else its business email domain;
free-mail addresses never form an account. Every rescore points the leads it scored at their
accounts, set-based (one read, one write of the leads that moved). The roll-up follows in the
same transaction for a real-time or due rescore (the touched accounts only); a bulk run rolls
every account up once, when its last chunk is done."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from django.db import connection
from django.utils import timezone

from leadscoring.db import in_list_sql, json_scalar_sql, update_rows
from scoring.engine import AccountRollup, business_domain, roll_up_accounts
from scoring.models import Account
from scoring.rule_inputs import LeadSelection

logger = logging.getLogger(__name__)

# Attribute keys under which CRM syncs keep the account a lead belongs to, in priority order.
CRM_ACCOUNT_ATTRIBUTES = (
    ("salesforce", "salesforce_converted_account_id"),
    ("hubspot", "hubspot_company_id"),
)


def account_key(email: str | None, crm_ids: Sequence[object]) -> tuple[str, str, str] | None:
    """(key, source, external id or domain) of the account a lead belongs to, or None.
    `crm_ids` are the lead's values of CRM_ACCOUNT_ATTRIBUTES, in their order."""
    for (source, _), value in zip(CRM_ACCOUNT_ATTRIBUTES, crm_ids, strict=True):
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            external = str(value).strip()
            return f"{source}:{external}", source, external
    domain = _email_business_domain(email)
    if domain is None:
        return None
    return f"domain:{domain}", "domain", domain


def _email_business_domain(email: str | None) -> str | None:
    """`business_domain(email)`, decided once per distinct domain (a chunk's leads share a few
    thousand): the engine reads only what follows the last "@"."""
    if not isinstance(email, str):
        return None
    at = email.rfind("@")
    return None if at < 0 else _suffix_business_domain(email[at:])


@lru_cache(maxsize=65536)
def _suffix_business_domain(suffix: str) -> str | None:
    return business_domain(suffix)


def assign_accounts(selection: LeadSelection) -> set[int]:
    """Point each selected lead at its account (creating accounts as needed); returns the
    accounts whose contacts may have changed (old and new), for the roll-up. One read of the
    few columns the key needs (each CRM id extracted by the database, not whole attribute
    documents), and one set-based write of the leads whose account changed (after the first
    run, normally none)."""
    where, params = selection.where("id")
    crm_columns = [json_scalar_sql("attributes", key) for _, key in CRM_ACCOUNT_ATTRIBUTES]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, email, company, account_id, {', '.join(crm_columns)}"
            f" FROM scoring_lead WHERE {where}",
            params,
        )
        rows = cursor.fetchall()
    wanted: dict[int, tuple[str, str, str] | None] = {}
    current: dict[int, int | None] = {}
    company: dict[str, str] = {}
    for lead_id, email, company_name, account_id, *crm_ids in rows:
        key = account_key(email, crm_ids)
        wanted[lead_id] = key
        current[lead_id] = account_id
        if key is not None and company_name and key[0] not in company:
            company[key[0]] = company_name
    keys = {key for key in wanted.values() if key is not None}
    known = _account_ids([k[0] for k in keys])
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
        known.update(_account_ids([k[0] for k in missing]))
    changed_leads: list[int] = []
    new_accounts: list[int | None] = []
    touched: set[int] = set()
    for lead_id, key in wanted.items():
        target = None if key is None else known[key[0]]
        if target != current[lead_id]:
            changed_leads.append(lead_id)
            new_accounts.append(target)
            touched.update(a for a in (target, current[lead_id]) if a is not None)
        elif target is not None:
            touched.add(target)
    if changed_leads:
        update_rows(
            "scoring_lead",
            "id",
            {"id": changed_leads, "account_id": new_accounts},
            types={"id": "bigint", "account_id": "bigint"},
        )
    return touched


def _account_ids(keys: Sequence[str]) -> dict[str, int]:
    where, params = in_list_sql("key", keys, "text")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, id FROM scoring_account WHERE {where}", params)
        return dict(cursor.fetchall())


def roll_up(rollup: AccountRollup | None, account_ids: Iterable[int] | None = None) -> int:
    """Recompute the contact counts, score and band of these accounts (all when None) from
    their contacts as stored now, writing those that changed; returns how many were rolled
    up. Without a roll-up
    in the rule set, accounts keep counts but no score."""
    only = None if account_ids is None else sorted(set(account_ids))
    if only is not None and not only:
        return 0
    sql = "SELECT account_id, score FROM scoring_lead WHERE account_id IS NOT NULL"
    params: list[Any] = []
    if only is not None:
        where, params = in_list_sql("account_id", only, "bigint")
        sql += f" AND {where}"
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
    # Only accounts whose roll-up changed are written (after the first run, normally few).
    update_rows(
        "scoring_account",
        "id",
        {
            "id": ids.tolist(),
            "score": [None if np.isnan(v) else int(v) for v in values.tolist()],
            "band": [b or "" for b in bands.tolist()],
            "contact_count": contacts.tolist(),
            "scored_contacts": scored.tolist(),
        },
        types={
            "id": "bigint",
            "score": "int",
            "band": "text",
            "contact_count": "int",
            "scored_contacts": "int",
        },
        also={"scored_at": timezone.now()},
        only_changed=True,
    )
    if only is None:
        with connection.cursor() as cursor:
            # Accounts that lost every contact.
            cursor.execute(
                "UPDATE scoring_account SET score = NULL, band = '', contact_count = 0,"
                " scored_contacts = 0 WHERE contact_count > 0 AND NOT EXISTS (SELECT 1 FROM"
                " scoring_lead l WHERE l.account_id = scoring_account.id)"
            )
    return int(m)


def accounts_after_rescore(rollup: AccountRollup | None, selection: LeadSelection) -> None:
    """In a real-time or time-based rescore's transaction: the selected leads' accounts, then
    those accounts' roll-up. A bulk run's chunks only assign (`assign_accounts`) and leave the
    roll-up to `accounts_refresh` at the run's end: accounts span chunks, so each chunk would
    roll most of them up again, and chunks side by side would queue on the same rows."""
    roll_up(rollup, assign_accounts(selection))


def accounts_refresh(rollup: AccountRollup | None) -> int:
    """Every account rolled up again (after a bulk run's last chunk)."""
    written = roll_up(rollup, None)
    logger.info("accounts.refreshed accounts=%s", written)
    return written
