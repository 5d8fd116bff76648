"""Lead columns prepared once per scoring call, and the derived `email_domain_type`.

A column is an array with one value per lead (str, int, float, bool, None, or a NumPy scalar).
`ColumnView` factorises it into its distinct values plus a code per lead, computes the
normalised forms of each distinct value once (missing flag, casefolded text, number, parsed
float), and lets predicates run over the distinct values and gather the answer per lead. A
column of 1,000,000 leads with a dozen distinct titles costs a dozen casefolds, not a million.

Missing: None, NaN (float, NumPy or Decimal) and strings that are empty after `strip()`.
Text form: `str(x).strip().casefold()`, except bools which render as "true" / "false".
Number form: the value as float when it is an int/float/Decimal (never a bool), else NaN.
Parsed form (for gte/lte/between): the number form, or `float(s)` for a string that parses.
"""

from __future__ import annotations

import numbers
from decimal import Decimal
from functools import cached_property

import numpy as np
from numpy.dtypes import StringDType

FREE_EMAIL_DOMAINS: frozenset[str] = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "yahoo.co.uk",
        "yahoo.co.in",
        "yahoo.fr",
        "yahoo.de",
        "ymail.com",
        "rocketmail.com",
        "hotmail.com",
        "hotmail.co.uk",
        "hotmail.fr",
        "hotmail.de",
        "outlook.com",
        "live.com",
        "msn.com",
        "aol.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "mail.com",
        "email.com",
        "gmx.com",
        "gmx.net",
        "gmx.de",
        "gmx.at",
        "gmx.ch",
        "proton.me",
        "protonmail.com",
        "pm.me",
        "tutanota.com",
        "yandex.com",
        "yandex.ru",
        "ya.ru",
        "mail.ru",
        "inbox.ru",
        "qq.com",
        "163.com",
        "126.com",
        "sina.com",
        "rediffmail.com",
        "zoho.com",
        "zohomail.com",
        "web.de",
        "t-online.de",
        "libero.it",
        "orange.fr",
        "free.fr",
        "laposte.net",
        "naver.com",
        "hanmail.net",
        "fastmail.com",
        "hey.com",
    }
)
# Providers with one domain per country (gmx.es, yandex.kz, ...): matched on the first label.
FREE_EMAIL_DOMAIN_FAMILIES: frozenset[str] = frozenset({"gmx", "yandex"})


def email_domain_type(email: str | None) -> str | None:
    """`"free"` for a free-mail provider's address, `"business"` otherwise.

    None when the email is missing, not a string, or has no domain after its last "@" (such a
    value cannot be classified, and a rule on it should not fire).
    """
    if not isinstance(email, str):
        return None
    return _domain_type_of_text(email.strip().casefold())


def business_domain(email: str | None) -> str | None:
    """The email's domain (casefolded, without a trailing dot) when it is a business domain;
    None for free mail, a missing email or one without a domain. Accounts form on it."""
    if not isinstance(email, str):
        return None
    _, at, domain = email.strip().casefold().rpartition("@")
    domain = _normalise_domain(domain)
    return domain if at and _domain_type(domain) == "business" else None


def _domain_type_of_text(text: str) -> str | None:
    _, at, domain = text.rpartition("@")
    return _domain_type(_normalise_domain(domain)) if at else None


def _normalise_domain(domain: str) -> str:
    # A trailing dot is the DNS root ("gmail.com." is gmail.com).
    return domain.strip().rstrip(".")


def _domain_type(domain: str) -> str | None:
    """Type of a normalised (casefolded, stripped) domain; None for an empty one."""
    if not domain:
        return None
    if domain in FREE_EMAIL_DOMAINS or domain.split(".", 1)[0] in FREE_EMAIL_DOMAIN_FAMILIES:
        return "free"
    return "business"


def _is_number_like(value: object) -> bool:
    if isinstance(value, bool | np.bool_):
        return False
    return isinstance(value, numbers.Real | Decimal)


_NONE_TYPE = type(None)
_TEXT_TYPES = frozenset({str, _NONE_TYPE})


def _describe(value: object) -> tuple[bool, str, float]:
    """(missing, text, number) of one distinct value."""
    kind = type(value)
    # Exact-type checks first: they are the common cases and far cheaper than isinstance
    # against the numbers ABCs.
    if kind is str:
        text = value.strip().casefold()
        return (not text), text, np.nan
    if value is None:
        return True, "", np.nan
    if kind is bool or kind is np.bool_:
        return False, "true" if value else "false", np.nan
    if kind is int or kind is float or _is_number_like(value):
        number = float(value)
        if number != number:  # NaN of any flavour (float, NumPy, Decimal)
            return True, "", np.nan
        return False, str(value).strip().casefold(), number
    text = str(value).strip().casefold()
    return (not text), text, np.nan


def _parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return np.nan


class ColumnView:
    """One lead column with its normalised forms, computed once per scoring call.

    The forms (`missing`, `text`, `number`, `parsed`) are arrays over the column's *entries*;
    `gather` turns a boolean answer over the entries into one answer per lead. For text-like
    columns the entries are the distinct values (`codes` maps each lead to its entry); for
    numeric columns, and for columns whose values are nearly all distinct (emails), the entries
    are the leads themselves and `codes` is None.
    """

    codes: np.ndarray | None
    missing: np.ndarray
    number: np.ndarray

    def __init__(self, values: object, n: int) -> None:
        self.n = n
        self._values: list[object] | None = None
        self._numeric_source: np.ndarray | None = None
        self._text: np.ndarray | None = None
        if values is None:
            # An absent column is all-missing: one entry, None, shared by every lead.
            self.codes = np.zeros(n, dtype=np.intp)
            self._set_entries([None])
            return
        # A list of mixed values must not go through np.asarray, which would turn [1, "a"]
        # into the strings ["1", "a"].
        array = values if isinstance(values, np.ndarray) else np.array(values, dtype=object)
        if array.shape != (n,):
            raise ValueError(f"a lead column has shape {array.shape}, expected ({n},)")
        if array.dtype.kind in "iuf":
            # Numeric columns: the numeric forms are the column itself, no Python per value.
            self._numeric_source = array
            self.codes = None
            self.number = array.astype(np.float64)
            self.missing = np.isnan(self.number)
            return
        values = array.tolist()
        types = set(map(type, values))
        entries, self.codes = _factorise(values, types)
        if types <= _TEXT_TYPES:
            self._set_text_entries(entries, has_none=_NONE_TYPE in types)
        else:
            self._set_entries(entries)

    @classmethod
    def from_entries(cls, entries: list[object], codes: np.ndarray | None, n: int) -> ColumnView:
        """A view over already-factorised entries (used for derived columns)."""
        view = cls.__new__(cls)
        view.n = n
        view._values = None
        view._numeric_source = None
        view._text = None
        view.codes = codes
        view._set_entries(entries)
        return view

    def _set_text_entries(self, entries: list[object], *, has_none: bool) -> None:
        """Entries that are all str or None: the forms without a Python call per entry."""
        self._values = entries
        strings = ["" if v is None else v for v in entries] if has_none else entries
        self._text = np.array(list(map(str.casefold, map(str.strip, strings))), dtype=StringDType())
        self.missing = self._text == ""
        self.number = np.full(len(entries), np.nan)

    def _set_entries(self, entries: list[object]) -> None:
        """Entries of any types: each distinct value is described once."""
        self._values = entries
        described = [_describe(v) for v in entries]
        count = len(described)
        self.missing = np.fromiter((d[0] for d in described), dtype=bool, count=count)
        self.number = np.fromiter((d[2] for d in described), dtype=np.float64, count=count)
        self._text = np.array([d[1] for d in described], dtype=StringDType())

    @property
    def text(self) -> np.ndarray:
        """Normalised text per entry; "" when missing (built on first use for numeric columns)."""
        if self._text is None:
            assert self._numeric_source is not None
            # str() on the distinct numbers only, then spread back over the leads.
            distinct, inverse = np.unique(self._numeric_source, return_inverse=True)
            texts = np.array([_describe(v)[1] for v in distinct.tolist()], dtype=StringDType())
            self._text = texts[inverse.reshape(-1)]
        return self._text

    @cached_property
    def parsed(self) -> np.ndarray:
        """The number, or the float a string parses as, per entry; NaN otherwise."""
        if self._values is None:
            return self.number
        parsed = self.number.copy()
        for i, (value, gone) in enumerate(zip(self._values, self.missing.tolist(), strict=True)):
            if not gone and isinstance(value, str):
                parsed[i] = _parse_float(value)
        return parsed

    @property
    def is_numeric(self) -> bool:
        """True for a numeric-dtype column: every present entry is a number."""
        return self._numeric_source is not None

    def gather(self, per_entry: np.ndarray) -> np.ndarray:
        """One value per lead from one value per entry."""
        if self.codes is None:
            return per_entry
        return per_entry[self.codes]

    def email_domain_types(self) -> ColumnView:
        """A view of `email_domain_type` derived from this (email) column."""
        # Split every address at its last "@" in NumPy, then classify each distinct domain
        # once: a million addresses usually share a few thousand domains.
        _, at, domain = np.strings.rpartition(self.text, np.array("@", dtype=StringDType()))
        domains = domain.tolist()
        kind_codes = {None: 0, "business": 1, "free": 2}
        code_of_domain = {
            d: kind_codes[_domain_type(_normalise_domain(d))] for d in dict.fromkeys(domains)
        }
        per_entry = np.fromiter(
            map(code_of_domain.__getitem__, domains), dtype=np.intp, count=len(domains)
        )
        # No "@" (this includes missing entries, whose text is ""): not classifiable.
        per_entry[at == ""] = 0
        codes = per_entry if self.codes is None else per_entry[self.codes]
        return ColumnView.from_entries([None, "business", "free"], codes, self.n)


_SAMPLE = 4096


def _factorise(values: list[object], types: set[type]) -> tuple[list[object], np.ndarray | None]:
    """Distinct values and a code per element (codes None when nearly all are distinct)."""
    n = len(values)
    try:
        # A sample tells identifier-like columns (emails, names) from categorical ones
        # before paying for hashing all of them.
        sample = values[:_SAMPLE]
        if len(sample) >= _SAMPLE and len(dict.fromkeys(sample)) > len(sample) // 2:
            return values, None
        distinct = dict.fromkeys(values)
    except TypeError:
        # Unhashable values (lists or dicts in custom attributes): no factorising.
        return values, None
    if len(types - _TEXT_TYPES) > 1:
        # True == 1 == 1.0 in Python, so they would share a dict slot while their text forms
        # ("true", "1", "1.0") differ: key by type as well when such types are mixed.
        keyed = list(zip(map(type, values), values, strict=True))
        distinct_keys = dict.fromkeys(keyed)
        if len(distinct_keys) > n // 2:
            return values, None
        index = {k: i for i, k in enumerate(distinct_keys)}
        codes = np.fromiter(map(index.__getitem__, keyed), dtype=np.intp, count=n)
        return [k[1] for k in distinct_keys], codes
    if len(distinct) > n // 2:
        return values, None
    index = {k: i for i, k in enumerate(distinct)}
    codes = np.fromiter(map(index.__getitem__, values), dtype=np.intp, count=n)
    return list(distinct), codes
