"""Template filters for `scoring.formatting`: `{% load numbers %}` then
`{{ share|percent }}`, `{{ revenue|money }}`, `{{ leads|count }}`, `{{ lift|ratio:n }}`."""

from __future__ import annotations

from django import template

from scoring import formatting

register = template.Library()


@register.filter
def percent(value: float | None) -> str:
    return formatting.percent(value)


@register.filter
def money(value: float | None) -> str:
    return formatting.money(value)


@register.filter(name="count")
def count_filter(value: int | float | None) -> str:
    return formatting.count(value)


@register.filter
def ratio(value: float | None, n: int | None) -> str:
    return formatting.ratio(value, n)


@register.filter
def below_min_n(n: int | None) -> bool:
    return formatting.small(n)
