"""Run any DuckDB query over the corpus views; show it as a table or export it as JSON, CSV or Parquet.

Exports stream through DuckDB's COPY (the result is never held in Python memory) into a temporary file that is
renamed into place only when complete.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import TextIO

import duckdb
import polars as pl

from ..errors import MemtrainError
from ..io import atomic_path
from .views import translate_errors

FORMATS = ("table", "json", "csv", "parquet")
SUFFIX_FORMATS = {".json": "json", ".csv": "csv", ".parquet": "parquet"}
COPY_OPTIONS = {
    "json": "FORMAT json, ARRAY true",
    "csv": "FORMAT csv, HEADER true",
    "parquet": "FORMAT parquet",
}
RESULT_VIEW = "memtrain_query_result"
CELL_CHARS = 200  # longer cells (an episode's text) are cut in the terminal table


def choose_format(fmt: str | None, output: Path | None) -> str:
    """The export format: as given, else from the output file's suffix, else a terminal table."""
    if fmt is None:
        fmt = SUFFIX_FORMATS.get(output.suffix.lower(), "table") if output else "table"
    if fmt not in FORMATS:
        raise MemtrainError(f"--format {fmt!r} is unknown; choose one of {', '.join(FORMATS)}")
    if fmt == "table" and output is not None:
        raise MemtrainError(
            "--format table prints to the terminal; use --format json, csv or parquet with --output"
        )
    if fmt == "parquet" and output is None:
        raise MemtrainError("--format parquet needs --output FILE")
    return fmt


def run_query(con: duckdb.DuckDBPyConnection, sql: str) -> duckdb.DuckDBPyRelation:
    """The query's result as a lazy DuckDB relation (nothing is read until it is fetched or copied)."""
    if not sql.strip():
        raise MemtrainError(
            '--sql is empty; e.g. --sql "SELECT answer_label, count(*) FROM episodes GROUP BY 1"'
        )
    with translate_errors("SQL error"):
        relation = con.sql(sql)
    if relation is None:
        raise MemtrainError(
            "the SQL statement returned no result to show; use a SELECT over episodes or passages"
        )
    return relation


def query_frame(relation: duckdb.DuckDBPyRelation, limit: int | None = None) -> pl.DataFrame:
    with translate_errors("SQL error"):
        return (relation.limit(limit) if limit is not None else relation).pl()


def export(con: duckdb.DuckDBPyConnection, relation: duckdb.DuckDBPyRelation, fmt: str, output: Path) -> Path:
    """Write the whole result to `output` in `fmt` (json: one array of objects; csv: with a header)."""
    with translate_errors("SQL export failed"), atomic_path(output) as tmp:
        relation.create_view(RESULT_VIEW, replace=True)
        target = str(tmp).replace("'", "''")
        con.execute(f"COPY {RESULT_VIEW} TO '{target}' ({COPY_OPTIONS[fmt]})")
    return output


def export_to_stream(
    con: duckdb.DuckDBPyConnection, relation: duckdb.DuckDBPyRelation, fmt: str, stream: TextIO | None = None
) -> None:
    """The same text `export` writes to a file, sent to `stream` (default: the current stdout)."""
    with tempfile.TemporaryDirectory(prefix="memtrain-sql-") as folder:
        file = export(con, relation, fmt, Path(folder) / f"result.{fmt}")
        with open(file, encoding="utf-8") as f:
            shutil.copyfileobj(f, stream or sys.stdout)
