"""Inspect a built corpus with DuckDB: summary statistics, rendered episodes, SQL queries, version diffs."""
