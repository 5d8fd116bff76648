"""Experiments' pure parts: the arm assignment (`assignment`) and the statistics (`stats`).
No Django here (import-linter checks it); the services and selectors use them."""
