"""Conversion KPIs by score band: honest (band before conversion) aggregations in SQL
(`selectors`), the statistics on top (`stats`, `report`) and plotly figure dicts (`charts`)."""
