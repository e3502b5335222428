"""DuckDB views over a corpus version's Parquet shards: `episodes`, `passages` and any other table it lists.

The views read the shards in place (`read_parquet` over the file list); nothing is copied into memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from ..corpus import CorpusVersion, short_reason
from ..errors import InputError, MemtrainError
from ..pipeline.schema import EPISODE_SCHEMA, PASSAGE_SCHEMA

EXPECTED_COLUMNS = {"episodes": EPISODE_SCHEMA.names, "passages": PASSAGE_SCHEMA.names}

# DuckDB names the file it could not read: `Failed to read file "…/x.parquet": Snappy decompression failure`,
# `Invalid string encoding found in Parquet file "…/x.parquet": value "<kilobytes of the damaged text>"`.
_UNREADABLE_FILE = re.compile(
    r"""(?:Failed to read file|found at end of file|reading file|in Parquet file)"""
    r"""\s*["']([^"']+)["']:?\s*(.*)""",
    re.S,
)
_ERROR_KIND = re.compile(r"^\s*[A-Z][A-Za-z ]*Error:\s*")
_QUOTED_VALUE = re.compile(r"""\bvalue\s*["']""")


def table_files(corpus: CorpusVersion) -> dict[str, list[Path]]:
    """Shard files per table: what the manifest lists (episodes and passages at least)."""
    tables = {"episodes": corpus.episode_files(), "passages": corpus.passage_files()}
    for table, rel in (corpus.manifest.get("files") or {}).items():
        if table not in tables and isinstance(rel, list) and all(str(r).endswith(".parquet") for r in rel):
            tables[table] = [corpus.path / r for r in rel]
    return tables


def check_shard(table: str, file: Path) -> None:
    """Read the shard's footer (cheap) so a truncated or foreign file is named before any query runs."""
    try:
        schema = pq.read_schema(file)
    except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError) on corrupt files
        raise InputError(file, f"corrupt or unreadable Parquet shard ({short_reason(exc)})") from None
    missing = [c for c in EXPECTED_COLUMNS.get(table, []) if c not in schema.names]
    if missing:
        raise InputError(file, f"not a memtrain {table} shard: missing column(s) {', '.join(missing)}")


def open_views(corpus: CorpusVersion) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per table of the corpus version."""
    con = duckdb.connect()
    for table, files in table_files(corpus).items():
        if not files:
            raise MemtrainError(f"{corpus.path}: the manifest lists no {table} shard")
        for file in files:
            check_shard(table, file)
        paths = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
        with translate_errors():
            con.execute(f'CREATE VIEW "{table}" AS SELECT * FROM read_parquet([{paths}])')
    return con


@contextmanager
def translate_errors(what: str = "query failed") -> Iterator[None]:
    """Turn a DuckDB error into a MemtrainError: a shard DuckDB could not read is named; the rest is SQL."""
    try:
        yield
    except duckdb.Error as exc:
        message = str(exc).strip()
        unreadable = _UNREADABLE_FILE.search(message)
        if unreadable:
            raise InputError(
                unreadable.group(1), f"corrupt Parquet shard ({duckdb_problem(message, unreadable)})"
            ) from None
        # Keep DuckDB's explanation ("… does not exist! Did you mean …"), drop its echo of the query.
        explanation = message.split("\nLINE ")[0]
        raise MemtrainError(f"{what}: {' '.join(explanation.split())}") from None


def duckdb_problem(message: str, unreadable: re.Match) -> str:
    """What DuckDB says went wrong with a file, in one short line, without the data it quotes (the value of
    a damaged string can be kilobytes of garbled text)."""
    before = _ERROR_KIND.sub("", message[: unreadable.start()]).strip()
    after = _QUOTED_VALUE.split(unreadable.group(2))[0].strip()
    return short_reason("; ".join(p for p in (before, after) if p) or "unreadable")


def first_row(con: duckdb.DuckDBPyConnection, sql: str) -> tuple | None:
    """The first row of a query, reading the result to its end (DuckDB keeps an unfinished result busy)."""
    rows = con.execute(sql).fetchall()
    return rows[0] if rows else None
