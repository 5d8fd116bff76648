"""Charts: selector and service output -> plotly figure dicts (plain data, unit-tested as dicts).

One module per page: `kpis` (the KPI dashboard), `preview` (a draft's impact preview). The
templates embed the dicts with `json_script` and `static/js/` draws them with the plotly.js
that `static/` serves."""
