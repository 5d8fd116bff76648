"""The dashboard page: figures embedded as JSON for charts.js, no inline scripts; the
calibration card loaded after the page."""

from __future__ import annotations

import json
import re

from tests.kpis import dataset


def test_the_page_renders_every_figure_as_json_for_charts_js(client_as, db):
    dataset.build()
    response = client_as("manager").get("/kpis/", {"start": "2024-01-01", "end": "2024-01-31"})
    assert response.status_code == 200
    html = response.content.decode()
    figure_ids = re.findall(r'data-figure="([^"]+)"', html)
    assert len(figure_ids) == 8 and "fig-calibration" not in figure_ids  # loaded after the page
    for figure_id in figure_ids:
        match = re.search(
            rf'<script id="{figure_id}" type="application/json">(.*?)</script>', html, re.S
        )
        assert match, figure_id
        figure = json.loads(match.group(1))
        assert set(figure) == {"data", "layout", "empty"}
    bands = json.loads(
        re.search(
            r'<script id="fig-bands" type="application/json">(.*?)</script>', html, re.S
        ).group(1)
    )
    # "Unscored" is not a band: kept out of the chart, counted in a note.
    assert bands["data"][0]["x"] == ["Cold", "Warm", "MQL", "Hot"]
    assert re.search(r'data-testid="unscored-note">\d+ leads? \(\d+ converted\)', html)
    # Click-through to the lead queue with the same filters.
    # Every stage: the KPIs count customers, which the queue's default (open leads) hides.
    link = "/leads/?stage=all&band=Hot&created_from=2024-01-01&created_to=2024-01-31"
    assert link.replace("&", "&amp;") in html
    assert link in json.dumps(bands)


def test_the_page_has_no_inline_scripts_and_serves_plotly_locally(client_as):
    html = client_as("manager").get("/kpis/").content.decode()
    for tag in re.findall(r"<script[^>]*>", html):
        assert 'src="' in tag or 'type="application/json"' in tag, tag
    # plotly is fetched by charts.js after the load event, from the URL it is given.
    assert 'data-plotly="/static/vendor/plotly-cartesian/plotly-cartesian.min.js"' in html
    assert 'src="/static/js/charts.js"' in html


def test_the_page_says_small_numbers_and_defines_every_kpi(client_as, db):
    dataset.build()
    html = client_as("manager").get("/kpis/", {"start": "2024-01-01", "end": "2024-01-31"}).content
    assert html.count(b'class="small-n-row"') == 4  # every band here has under 30 leads
    assert b"n=5" in html
    for kpi in ("bands", "funnel", "cycle", "qualification", "lift", "calibration", "revenue"):
        assert f'data-kpi="{kpi}"'.encode() in html
    assert b"/kpis/export/bands.csv?start=2024-01-01&amp;end=2024-01-31" in html


def test_plotly_and_the_dashboard_script_are_served(client_as):
    client = client_as("manager")
    for path in ("/static/vendor/plotly-cartesian/plotly-cartesian.min.js", "/static/js/charts.js"):
        response = client.get(path)
        assert response.status_code == 200, path


def _figure(html: str, figure_id: str) -> dict:
    match = re.search(
        rf'<script id="{figure_id}" type="application/json">(.*?)</script>', html, re.S
    )
    return json.loads(match.group(1))


def test_charts_without_data_are_marked_empty_for_no_data_yet(client_as, db):
    dataset.build()
    client = client_as("manager")
    html = client.get("/kpis/", {"start": "2024-01-01", "end": "2024-01-31"}).content.decode()
    assert _figure(html, "fig-bands")["empty"] is False
    # A period before any lead: every chart says "No data yet" (charts.js) instead of axes.
    period = {"start": "2020-01-01", "end": "2020-01-31"}
    html = client.get("/kpis/", period).content.decode()
    for figure_id in ("fig-bands", "fig-feedback", "fig-revenue", "fig-lift"):
        assert _figure(html, figure_id)["empty"] is True, figure_id
    calibration = client.get("/kpis/calibration/", period).content.decode()
    assert _figure(calibration, "fig-calibration")["empty"] is True


def test_the_calibration_card_is_loaded_for_the_pages_filters(client_as, db):
    dataset.build()
    client = client_as("manager")
    html = client.get("/kpis/", {"start": "2024-01-01", "end": "2024-01-31"}).content.decode()
    url = "/kpis/calibration/?start=2024-01-01&end=2024-01-31"
    assert 'hx-get="{}"'.format(url.replace("&", "&amp;")) in html
    fragment = client.get(url)
    assert fragment.status_code == 200
    body = fragment.content.decode()
    assert 'data-figure="fig-calibration"' in body and "<html" not in body
    figure = _figure(body, "fig-calibration")
    assert figure["empty"] is False and figure["data"][0]["x"]
    assert client_as("sales1").get(url).status_code == 403


def test_revenue_is_money_in_the_currency_setting(client_as, db, settings):
    settings.CURRENCY = "EUR"
    dataset.build()
    html = client_as("manager").get("/kpis/", {"start": "2024-01-01", "end": "2024-01-31"})
    html = html.content.decode()
    assert re.search(r'<td class="num">€[\d,]+</td>', html)
    revenue = _figure(html, "fig-revenue")
    assert revenue["layout"]["yaxis"]["title"]["text"] == "Revenue (EUR)"
    assert all(text.startswith("€") for text in revenue["data"][0]["hovertext"])


def test_the_version_filter_names_the_leads_it_leaves_out(client_as, db):
    from scoring.models import ScoreHistory

    dataset.build()
    version = ScoreHistory.objects.values_list("rule_set_version", flat=True).first() or 1
    html = client_as("manager").get(
        "/kpis/", {"start": "2024-01-01", "end": "2024-01-31", "version": version + 50}
    )
    html = html.content.decode()
    # No lead was scored by that version: every lead is out of the charts, and the note says why.
    assert f"not scored by rule set v{version + 50} before their outcome" in html
    assert _figure(html, "fig-bands")["empty"] is True
