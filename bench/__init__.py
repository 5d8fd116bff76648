"""`make bench`: the project's benchmark (see bench/__main__.py)."""
