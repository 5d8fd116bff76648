"""One number format for every page: shares as percentages with one decimal, money with
thousands separators and the CURRENCY setting, counts with thousands separators, and rates
that rest on too few cases (fewer than MIN_N) marked as such.

Pure functions over plain values; `scoring/templatetags/numbers.py` exposes them to templates
and the chart modules use them for labels."""

from __future__ import annotations

from django.conf import settings

# Below this many cases a rate or a lift is mostly noise: the pages hatch or hide it.
MIN_N = 30
DASH = "\u2013"  # an en dash: "no value"
_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹"}


def percent(value: float | None) -> str:
    """0.0312 -> "3.1%"; None -> DASH."""
    if value is None:
        return DASH
    return f"{value:.1%}"


def count(value: int | float | None) -> str:
    """1150200 -> "1,150,200"; None -> DASH."""
    if value is None:
        return DASH
    return f"{value:,.0f}"


def money(value: float | None, currency: str | None = None) -> str:
    """1150200 -> "$1,150,200" (whole units; the CURRENCY setting unless given); a currency
    without a known symbol is written after the amount ("1,150,200 CHF"); None -> DASH."""
    if value is None:
        return DASH
    code = (currency or settings.CURRENCY).upper()
    amount = f"{abs(value):,.0f}"
    sign = "-" if value < 0 else ""
    symbol = _SYMBOLS.get(code)
    return f"{sign}{symbol}{amount}" if symbol else f"{sign}{amount} {code}"


def currency_label() -> str:
    """How an axis or column names the currency: "USD"."""
    return settings.CURRENCY.upper()


def ratio(value: float | None, n: int | None, *, places: int = 2) -> str:
    """A lift or other ratio with its n, hidden below MIN_N: "1.42 (n=57)", or
    "<DASH> (n=1, too few)"."""
    if n is None or n < MIN_N:
        return f"{DASH} (n={n or 0}, too few)"
    if value is None:
        return f"{DASH} (n={n})"
    return f"{value:.{places}f} (n={n:,})"


def small(n: int | None) -> bool:
    """Whether a figure resting on `n` cases is below the minimum."""
    return n is None or n < MIN_N
