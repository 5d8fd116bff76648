"""One number format for every page (scoring.formatting)."""

from scoring import formatting


def test_percentages_have_one_decimal():
    assert formatting.percent(0.0312) == "3.1%"
    assert formatting.percent(1) == "100.0%"
    assert formatting.percent(None) == "\u2013"


def test_money_has_thousands_separators_and_the_currency(settings):
    settings.CURRENCY = "USD"
    assert formatting.money(1150200) == "$1,150,200"
    settings.CURRENCY = "eur"
    assert formatting.money(1150200.4) == "€1,150,200"
    assert formatting.money(-5, "CHF") == "-5 CHF"
    assert formatting.money(None) == "\u2013"


def test_counts_have_thousands_separators():
    assert formatting.count(1234567) == "1,234,567"


def test_small_is_below_thirty():
    assert formatting.small(29) and not formatting.small(30) and formatting.small(None)
