"""Conversion KPIs by score band: honest (band before conversion) aggregations in SQL
(`selectors`, for the filters parsed in `filters`), kept fast by the conversion-band rollup
(`rollup`) and the per-day KPI cube (`cube`), the statistics on top (`stats`, `report`) and
plotly figure dicts (`charts`)."""
