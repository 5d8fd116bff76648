"""Formula-injection escaping for CSV files: the one escaper lives in
:mod:`scoring.csv_safety` (integrations import scoring, never the reverse); this name is kept
for code that imports it from here."""

from scoring.csv_safety import csv_lines, safe_cell, safe_row

__all__ = ["csv_lines", "safe_cell", "safe_row"]
