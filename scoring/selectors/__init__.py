"""Reads that return plain data to pages, the API, exports and charts (writes live in
`scoring.services`). One module per area: `leads` (the one lead list: page, API and CSV, and
which leads a user may see), `lead_page`, `feedback` (the feedback review), `rules` (the rule
editor's reads and the live rule set), `home`. KPI reads are `scoring.kpis.selectors`."""
