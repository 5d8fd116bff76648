"""The dashboard page: figures embedded as JSON for kpis.js, no inline scripts."""

from __future__ import annotations

import json
import re

from tests.kpis import dataset


def test_the_page_renders_every_figure_as_json_for_kpis_js(client_as, db):
    dataset.build()
    response = client_as("manager").get("/kpis/", {"start": "2024-01-01", "end": "2024-01-31"})
    assert response.status_code == 200
    html = response.content.decode()
    figure_ids = re.findall(r'data-figure="([^"]+)"', html)
    assert len(figure_ids) == 9
    for figure_id in figure_ids:
        match = re.search(
            rf'<script id="{figure_id}" type="application/json">(.*?)</script>', html, re.S
        )
        assert match, figure_id
        figure = json.loads(match.group(1))
        assert set(figure) == {"data", "layout"}
    bands = json.loads(
        re.search(
            r'<script id="fig-bands" type="application/json">(.*?)</script>', html, re.S
        ).group(1)
    )
    assert bands["data"][0]["x"] == ["Cold", "Warm", "MQL", "Hot", "Unscored"]
    # Click-through to the lead queue with the same filters.
    assert "/leads/?band=Hot&amp;created_from=2024-01-01&amp;created_to=2024-01-31" in html
    assert "/leads/?band=Hot&created_from=2024-01-01&created_to=2024-01-31" in json.dumps(bands)


def test_the_page_has_no_inline_scripts_and_serves_plotly_locally(client_as):
    html = client_as("manager").get("/kpis/").content.decode()
    for tag in re.findall(r"<script[^>]*>", html):
        assert 'src="' in tag or 'type="application/json"' in tag, tag
    assert 'src="/static/vendor/plotly-cartesian/plotly-cartesian.min.js"' in html
    assert 'src="/static/js/kpis.js"' in html


def test_the_page_says_small_numbers_and_defines_every_kpi(client_as, db):
    dataset.build()
    html = client_as("manager").get("/kpis/", {"start": "2024-01-01", "end": "2024-01-31"}).content
    assert html.count(b'class="small-n-row"') == 5  # every band here has under 30 leads
    assert b"n=5" in html
    for kpi in ("bands", "funnel", "cycle", "qualification", "lift", "calibration", "revenue"):
        assert f'data-kpi="{kpi}"'.encode() in html
    assert b"/kpis/export/bands.csv?start=2024-01-01&amp;end=2024-01-31" in html


def test_plotly_and_the_dashboard_script_are_served(client_as):
    client = client_as("manager")
    for path in ("/static/vendor/plotly-cartesian/plotly-cartesian.min.js", "/static/js/kpis.js"):
        response = client.get(path)
        assert response.status_code == 200, path
