"""`build_corpus`: run the stages in order, each resumable, and publish a versioned corpus folder.

Layout under ``OUT/<name>/``::

    v<N>/                    finished versions (manifest.json, stats.json, episodes/, passages/)
    .work/<build>/           unfinished episode shards of one build (deleted on success)
    .cache/passages-<id>/    passage shards, their memory-mapped store (store/) and the retrieval index,
                             shared by builds that differ only in episodes
    .cache/ner-<model>/      NER results by passage id;  .cache/checksums/: source checksums

Per-shard stages (read → clean → passages) run in worker processes, one source shard each (a lone shard has
its pages cleaned by the workers). The passages are then written once more as an uncompressed, memory-mapped
store (`memtrain.pipeline.store`) that episode assembly reads by index, so no stage holds the passage table
in memory. The retrieval index is global and queried memory-mapped. Related-passage queries, NER batches and
the masking and tokenizing of episodes (which need only the pivot's entities) run as tasks in the same
workers, local processes or Ray tasks; this process writes the NER cache and the shards. A finished unit is
a file renamed into place, so a rerun after any interruption redoes only what is missing and produces
byte-identical episodes.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import functools
import hashlib
import json
import shutil
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future, as_completed
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .. import __version__, assets
from ..chunks import RULE_VERSION as CHUNK_RULE
from ..config import to_dict
from ..corpus import CorpusVersion, list_versions, open_corpus
from ..errors import InputError
from ..io import atomic_path, exclusive_lock, write_json_atomic
from ..outputs import check_writable_output
from . import read
from .clean import clean_page
from .config import PRESETS, CorpusConfig
from .episodes import PassageStore, Plan, Rejection, draw_pivot, entity_spans, mask_episode, plan_episode
from .executors import make_executor, resolve_workers
from .ner import NerCache, recognise_texts, run_ner, worker_pipeline
from .passages import passage_text, split_article
from .progress import Reporter
from .retrieval import build_index, index_folder, load_index, related_task
from .schema import EPISODE_SCHEMA, PASSAGE_SCHEMA, SCHEMA_VERSION
from .store import passage_store
from .tokens import chunk_bounds, count_tokens, load_tokenizer
from .units import is_finished, publish_version, remove_temporaries, source_key, unit_stats

PASSAGE_BATCH = 2000
# The stages in the order they run, as the manifest's "stages" and the stats' "seconds" name them.
STAGES = ("read+clean+passages", "store", "related", "ner", "episodes", "write")


@dataclass
class BuildResult:
    corpus: CorpusVersion
    created: bool  # False: an identical build already existed and nothing was done
    summary: dict


def resolve_source(config: CorpusConfig) -> str:
    return config.source if config.source else str(assets.fetch("enwiki-excerpt"))


def build_identity(config: CorpusConfig, source_fingerprint: dict) -> str:
    """What the output depends on: the config (less runtime knobs and the name) and the source's bytes."""
    semantic = {
        k: v for k, v in to_dict(config).items() if k not in (*CorpusConfig.RUNTIME_FIELDS, "name", "source")
    }
    payload = json.dumps(
        {
            "config": semantic,
            "source": source_key(source_fingerprint),
            "schema": SCHEMA_VERSION,
            "chunker": CHUNK_RULE,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def passages_identity(config: CorpusConfig, source_fingerprint: dict) -> str:
    """What the passages and the retrieval index depend on; builds that differ only in episodes share them."""
    keys = ("passage_words", "tokenizer", "retriever", "hf_split", "hf_name")
    payload = {
        "source": source_key(source_fingerprint),
        "schema": SCHEMA_VERSION,
        **{k: getattr(config, k) for k in keys},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cached_fingerprint(source: str, cache: Path) -> dict:
    """The source's checksum, remembered by (path, size, mtime) so a large dump is hashed once."""
    path = Path(source)
    if not path.exists():
        return read.source_fingerprint(source)
    stat_key = json.dumps([str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns])
    key = hashlib.sha1(stat_key.encode()).hexdigest()
    file = cache / "checksums" / f"{key}.json"
    if file.exists():
        return json.loads(file.read_text())
    fingerprint = read.source_fingerprint(source)
    write_json_atomic(file, fingerprint)
    return fingerprint


# --- stage 1-3: read → clean → passages, one source shard per task ----------------------------------------


def clean_and_split(page, passage_words: int) -> tuple[list[dict], str | None]:
    """One page → its passages, or no passages and the reason the page was dropped."""
    article, reason = clean_page(page)
    return ([], reason) if article is None else (split_article(article, passage_words), None)


def ordered_map(pool: Executor, fn, items: Iterable, *args, window: int = 64) -> Iterator:
    """`fn(item, *args)` in `pool`, results in input order, at most `window` items in flight; in this process
    while the pool is not `ready` (its workers still starting), so that cheap tasks never wait for them."""
    in_flight: collections.deque[Future] = collections.deque()
    items = iter(items)
    for item in items:
        if pool.ready():
            in_flight.append(pool.submit(fn, item, *args))
            break
        yield fn(item, *args)
    for item in items:
        in_flight.append(pool.submit(fn, item, *args))
        if len(in_flight) >= window:
            yield in_flight.popleft().result()
    while in_flight:
        yield in_flight.popleft().result()


def process_shard(
    shard: read.SourceShard,
    passage_words: int,
    tokenizer_name: str,
    dest: str,
    on_page=None,
    clean_pool: Executor | None = None,
) -> dict:
    """Read one source shard, clean its pages, split articles into passages; write one Parquet file.

    With `clean_pool`, pages are cleaned in its processes (a lone shard would otherwise use one core).
    """
    start = time.perf_counter()
    tokenizer = load_tokenizer(tokenizer_name)
    counts = collections.Counter(
        dict.fromkeys(("pages", "articles", "passages", "words", "passage_tokens"), 0)
    )
    dropped: collections.Counter = collections.Counter()
    batch: list[dict] = []
    pages = read.read_shard(shard)
    if clean_pool is None:
        cleaned = (clean_and_split(page, passage_words) for page in pages)
    else:
        cleaned = ordered_map(clean_pool, clean_and_split, pages, passage_words)
    with atomic_path(dest) as tmp, pq.ParquetWriter(tmp, PASSAGE_SCHEMA, compression="zstd") as writer:

        def flush() -> None:
            strings = [passage_text(p["title"], p["text"]) for p in batch]
            for p, n in zip(batch, count_tokens(tokenizer, strings), strict=True):
                p["num_tokens"] = n
            writer.write_table(pa.Table.from_pylist(batch, schema=PASSAGE_SCHEMA))
            counts["passage_tokens"] += sum(p["num_tokens"] for p in batch)
            batch.clear()

        for passages, reason in cleaned:
            counts["pages"] += 1
            if on_page is not None and counts["pages"] % 100 == 0:
                on_page(100)
            if reason is not None:
                dropped[reason] += 1
                continue
            counts["articles"] += 1
            for passage in passages:
                batch.append(passage)
                counts["passages"] += 1
                counts["words"] += passage["num_words"]
            if len(batch) >= PASSAGE_BATCH:
                flush()
        if batch:
            flush()
    return {**counts, "dropped": dict(dropped), "seconds": time.perf_counter() - start, "shard": shard.key}


def absolute(shard: read.SourceShard) -> read.SourceShard:
    path = Path(shard.path)
    return dataclasses.replace(shard, path=str(path.resolve())) if path.exists() else shard


def run_read_stage(config, shards, folder: Path, reporter: Reporter, executor: Executor) -> list[Path]:
    """Read, clean and split every source shard not finished yet: as tasks on `executor`, one shard each,
    or shard after shard in this process, a lone shard (one dump file) having its pages cleaned by the
    executor's workers when its tasks are cheap (a local pool)."""
    folder.mkdir(parents=True, exist_ok=True)
    outputs = [folder / f"shard-{i:05d}.parquet" for i in range(len(shards))]
    todo = [i for i, out in enumerate(outputs) if not is_finished(out, reporter)]
    reporter.start("read", total=None, unit="pages")
    for i, out in enumerate(outputs):
        if i not in todo:
            reporter.advance("read", json.loads(out.with_suffix(".json").read_text())["pages"])

    args = (config.passage_words, config.tokenizer)
    if executor.slots() <= 1 or (len(todo) <= 1 and executor.fine_grained):
        clean_pool = executor if executor.slots() > 1 else None
        for i in todo:
            on_page = functools.partial(reporter.advance, "read")
            stats = process_shard(shards[i], *args, str(outputs[i]), on_page, clean_pool)
            write_json_atomic(outputs[i].with_suffix(".json"), {**stats, "file": unit_stats(outputs[i])})
            reporter.advance("read", stats["pages"] % 100)
    else:
        # absolute paths: Ray workers may run in another directory, or on another node
        futures = {
            executor.submit(process_shard, absolute(shards[i]), *args, str(outputs[i].resolve())): i
            for i in todo
        }
        for future in as_completed(futures):
            stats, out = future.result(), outputs[futures[future]]
            write_json_atomic(out.with_suffix(".json"), {**stats, "file": unit_stats(out)})
            reporter.advance("read", stats["pages"])
    reporter.finish("read")
    return outputs


# --- stage 4: related passages ------------------------------------------------------------------------------


def run_related_stage(config, store: PassageStore, work: Path, reporter: Reporter):
    """The retrieval index of the passages in `work`: the cached one when it is intact, else built (one index,
    or shards of `index_shard_passages`; an interrupted sharded build keeps its finished shards)."""
    per_shard = config.index_shard_passages
    folder = index_folder(work, config.retriever, per_shard)
    shards = max(1, -(-len(store) // per_shard)) if per_shard else 1
    reporter.start("related", total=shards, unit="index shards" if per_shard else "index")
    retriever = None
    if folder.exists():
        try:
            retriever = load_index(config.retriever, folder)
            if retriever.num_docs != len(store):
                raise ValueError(f"it indexes {retriever.num_docs} passages, not {len(store)}")
            reporter.advance("related", shards)
        except (OSError, ValueError, KeyError) as exc:
            reason = " ".join(str(exc).split())[:120]
            reporter.log(f"warning: {folder}: damaged cached index ({reason}); rebuilding it")
            shutil.rmtree(folder)
            retriever = None
    if retriever is None:
        build_index(
            config.retriever, store.strings.iter_range, len(store), folder, per_shard,
            on_shard=lambda done, total: reporter.advance("related", 1),
        )  # fmt: skip
        # Queried memory-mapped from its files, as a resumed build does: the build's memory then does not
        # hold the index, and both runs rank with the same arrays.
        retriever = load_index(config.retriever, folder)
    reporter.finish("related")
    return retriever


# --- stage 5-6: NER and episodes, one episode shard at a time ----------------------------------------------


ASSEMBLY_BATCH = 16  # episodes per assembly task (and per tokenizer call)


def mask_batch(
    plans: list[Plan], store: PassageStore, pivot_entities: dict[int, list[dict]], config: CorpusConfig
) -> list[dict | Rejection]:
    """Mask, tokenize and cut planned episodes; an episode whose exact token count falls outside the range
    (the plan's estimate missed by more than the margin) becomes a Rejection "length-exact"."""
    labels = set(config.ner_labels)
    results = [
        mask_episode(plan, store, pivot_entities[plan.pivot], labels, config.min_mask_occurrences)
        for plan in plans
    ]
    masked = [r for r in results if not isinstance(r, Rejection)]
    tokenizer = load_tokenizer(config.tokenizer)
    bounds = chunk_bounds(tokenizer, [r["text"] for r in masked], config.chunk_size)
    for episode, (num_tokens, chunks) in zip(masked, bounds, strict=True):
        episode.update(num_tokens=num_tokens, chunks=chunks)
    return [
        r
        if isinstance(r, Rejection) or config.min_tokens <= r["num_tokens"] <= config.max_tokens
        else Rejection(plan.index, plan.attempt, "length-exact")
        for plan, r in zip(plans, results, strict=True)
    ]


def ner_slots(config: CorpusConfig, executor: Executor) -> int:
    """How many NER tasks `executor` runs at once: the local workers, or the Ray cluster's CPUs (asked each
    round, so an autoscaled cluster is used) per `ner_cpus_per_worker`."""
    return executor.slots(config.ner_cpus_per_worker)


def recognise_and_assemble(
    config, plans: list[Plan], store, cache, executor: Executor, reporter
) -> tuple[list[dict | Rejection], int, float]:
    """NER and episode assembly for a round of plans, overlapped, both as tasks on `executor`.

    The answer, masking and tokenization need only the pivot's entities: NER runs on the pivots first, then
    the masking tasks are queued ahead of NER over the other passages, whose entities are needed only for
    the recall-task spans added at the end. Returns the results in plan order, the words recognised and the
    seconds spent in NER (waiting for it, when it runs in workers).
    """
    slots = ner_slots(config, executor)

    def recognise(passages: list[int]) -> tuple[int, float]:
        start = time.perf_counter()
        items = {store.ids[p]: store.strings[p] for p in passages}
        on_batch = functools.partial(reporter.advance, "ner")
        words = run_ner(executor, items, cache, config.ner_model, config.ner_batch_size, slots, on_batch)
        return words, time.perf_counter() - start

    def entities(passage: int) -> list[dict]:
        return cache.get(store.ids[passage], store.strings[passage])

    pivot_words, pivot_seconds = recognise([plan.pivot for plan in plans])
    futures = []
    for start in range(0, len(plans), ASSEMBLY_BATCH):
        batch = plans[start : start + ASSEMBLY_BATCH]
        needed = sorted({p for plan in batch for p in plan.passages})
        pivots = {plan.pivot: entities(plan.pivot) for plan in batch}
        futures.append(executor.submit(mask_batch, batch, store.subset(needed), pivots, config))
    rest_words, rest_seconds = recognise([p for plan in plans for p in plan.passages])

    results = [r for future in futures for r in future.result()]
    for plan, result in zip(plans, results, strict=True):
        if not isinstance(result, Rejection):
            strings = [store.strings[p] for p in plan.passages]
            result["entities"] = entity_spans(result, strings, [entities(p) for p in plan.passages])
            del result["mask_spans"]
    return results, pivot_words + rest_words, pivot_seconds + rest_seconds


def find_related(config, retriever, pivots: list[int], store, executor: Executor) -> list[list[int]]:
    """The `num_related` passages of each pivot, best first: split over the executor's workers (each opens
    the saved index once, memory-mapped), or in this process when there is one. The same index answers
    either way, so the result is too."""
    texts = [store.strings[p] for p in pivots]
    slots = executor.slots()
    if slots <= 1 or len(pivots) < 2 or retriever.folder is None:
        return retriever.related(pivots, texts, config.num_related)
    size = -(-len(pivots) // slots)
    folder = str(retriever.folder.resolve())  # absolute: Ray workers may run in another directory
    futures = [
        executor.submit(
            related_task,
            config.retriever,
            folder,
            pivots[i : i + size],
            texts[i : i + size],
            config.num_related,
        )
        for i in range(0, len(pivots), size)
    ]
    return [row for future in futures for row in future.result()]


def build_episode_shard(config, indices, store, retriever, cache, executor, reporter) -> tuple[list, dict]:
    pending = {i: 0 for i in indices}
    episodes: dict[int, dict] = {}
    rejections: collections.Counter = collections.Counter()
    ner_words = ner_seconds = 0.0
    while pending:
        order = sorted(pending)
        pivots = [draw_pivot(config.seed, i, pending[i], len(store)) for i in order]
        related = find_related(config, retriever, pivots, store, executor)
        plans = []
        for i, pivot, rel in zip(order, pivots, related, strict=True):
            plan = plan_episode(
                i, pending[i], config.seed, pivot, rel, store, config.num_random, config.min_tokens,
                config.max_tokens, config.length_distribution,
            )  # fmt: skip
            plans.append(plan)
        valid = [plan for plan in plans if not isinstance(plan, Rejection)]
        assembled, words, seconds = recognise_and_assemble(config, valid, store, cache, executor, reporter)
        ner_words += words
        ner_seconds += seconds
        by_index = {plan.index: result for plan, result in zip(valid, assembled, strict=True)}
        for plan in plans:
            result = plan if isinstance(plan, Rejection) else by_index[plan.index]
            if not isinstance(result, Rejection):
                result.update(
                    episode_id=f"ep-{result['index']:07d}",
                    tokenizer=config.tokenizer,
                    chunk_size=config.chunk_size,
                )
                episodes[result["index"]] = result
                del pending[result["index"]]
                reporter.advance("episodes", 1)
                continue
            rejections[result.reason] += 1
            pending[result.index] += 1
            if pending[result.index] >= config.max_pivot_tries:
                rejections["gave-up"] += 1
                del pending[result.index]
                reporter.advance("episodes", 1)
    rows = [episodes[i] for i in sorted(episodes)]
    stats = {
        "episodes": len(rows),
        "rejections": dict(rejections),
        "ner_words": ner_words,
        "ner_seconds": ner_seconds,
    }
    return rows, stats


# What every local worker imports before its set-up: imported once, by the server the workers fork from.
WORKER_MODULES = ("memtrain.pipeline.build", "spacy", "transformers.models.auto.tokenization_auto")


def start_episode_worker(tokenizer_name: str, ner_model: str) -> None:
    """Load once what every NER and masking task of this worker process uses."""
    load_tokenizer(tokenizer_name)
    worker_pipeline(ner_model)


def build_executor(config: CorpusConfig) -> Executor:
    """The executor of a whole build: `workers` local processes, each loading the tokenizer and the spaCy
    pipeline once when it starts (so that the loading overlaps the read stage, whose pages they also clean),
    this process alone (`workers: 1`), or Ray tasks with `ner_cpus_per_worker` CPUs per NER task."""
    setup = (config.tokenizer, config.ner_model)
    ray_options = {recognise_texts: {"num_cpus": config.ner_cpus_per_worker}}
    return make_executor(
        config.executor, resolve_workers(config.workers), start_episode_worker, setup, ray_options,
        preload=WORKER_MODULES,
    )  # fmt: skip


def run_episode_stage(
    config, store, retriever, work: Path, cache_dir: Path, reporter, executor: Executor
) -> list[Path]:
    folder = work / "episodes"
    folder.mkdir(parents=True, exist_ok=True)
    size = config.episodes_per_shard
    ranges = [range(s, min(s + size, config.num_episodes)) for s in range(0, config.num_episodes, size)]
    outputs = [folder / f"shard-{k:05d}.parquet" for k in range(len(ranges))]
    todo = [k for k, out in enumerate(outputs) if not is_finished(out, reporter)]
    reporter.start("ner", total=None, unit="passages")
    reporter.start("episodes", total=config.num_episodes, unit="episodes")
    reporter.advance("episodes", sum(len(ranges[k]) for k in range(len(ranges)) if k not in todo))
    ner_seconds = 0.0
    if todo:
        cache = NerCache(cache_dir, config.ner_model, log=reporter.log)
        for k in todo:
            rows, stats = build_episode_shard(config, ranges[k], store, retriever, cache, executor, reporter)
            ner_seconds += stats["ner_seconds"]
            cache.flush()
            table = pa.Table.from_pylist(rows, schema=EPISODE_SCHEMA)
            with atomic_path(outputs[k]) as tmp:
                pq.write_table(table, tmp, compression="zstd")
            write_json_atomic(outputs[k].with_suffix(".json"), {**stats, "file": unit_stats(outputs[k])})
    reporter.finish("ner")
    reporter.finish("episodes")
    return outputs, ner_seconds


# --- stage 7: the versioned output (published by units.publish_version) -----------------------------


def episode_summary(files: list[Path]) -> dict:
    labels: collections.Counter = collections.Counter()
    tokens = episodes = masks = 0
    for f in files:
        t = pq.read_table(f, columns=["answer_label", "num_tokens", "num_masks"])
        episodes += t.num_rows
        tokens += int(pa.compute.sum(t["num_tokens"]).as_py() or 0)
        masks += int(pa.compute.sum(t["num_masks"]).as_py() or 0)
        labels.update(t["answer_label"].to_pylist())
    return {"episodes": episodes, "tokens": tokens, "masks": masks, "labels": dict(labels.most_common())}


def build_corpus(
    config: CorpusConfig, out: str | Path = "corpora", reporter: Reporter | None = None
) -> BuildResult:
    """Build (or resume, or find already built) the corpus version that `config` describes.

    One build at a time writes a corpus folder: a second one into the same `OUT/<name>` is refused at once.
    """
    reporter = reporter or Reporter()
    root = check_writable_output(Path(out) / config.name, kind="dir", what="--out")
    with exclusive_lock(root, "building this corpus"):
        remove_temporaries(root)
        return _build_locked(config, root, reporter)


@contextlib.contextmanager
def timed(seconds: dict[str, float], stage: str) -> Iterator[None]:
    """Add the block's wall time to ``seconds[stage]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - start


def run_store_stage(
    config, passage_files: list[Path], passages: int, passage_dir: Path, reporter: Reporter
) -> PassageStore:
    """The memory-mapped store of the `passages` passages of the shards (written once per passage set, see
    `store`)."""
    reporter.start("store", total=passages, unit="passages")
    written: list[int] = []

    def on_batch(n: int) -> None:
        written.append(n)
        reporter.advance("store", n)

    tokenizer = load_tokenizer(config.tokenizer)
    store = passage_store(passage_files, passage_dir / "store", tokenizer, reporter.log, on_batch)
    if not written:  # an earlier run's store, reused
        reporter.advance("store", len(store))
    reporter.finish("store")
    return store


def read_counts(source: str, passage_files: list[Path]) -> tuple[list[dict], collections.Counter, dict]:
    """The read stage's per-shard stats, their totals and the dropped pages by reason; refuses a source
    without a single article."""
    shard_stats = [json.loads(f.with_suffix(".json").read_text()) for f in passage_files]
    counts: collections.Counter = collections.Counter()
    dropped: collections.Counter = collections.Counter()
    for s in shard_stats:
        counts.update({k: s.get(k, 0) for k in ("pages", "articles", "passages", "words", "passage_tokens")})
        dropped.update(s.get("dropped", {}))
    if counts["articles"] == 0:
        why = ", ".join(f"{k}: {v}" for k, v in dropped.items()) or "no pages"
        raise InputError(
            source, f"no main-namespace article found ({counts['pages']} pages read; dropped {why})"
        )
    return shard_stats, counts, dict(dropped)


def check_enough_text(config: CorpusConfig, store: PassageStore, source: str) -> None:
    need = 1 + config.num_related
    tokens = int(store.num_tokens.sum())
    if len(store) < need or tokens < config.min_tokens:
        tiny = PRESETS["tiny"]
        smaller = config.num_related > tiny["num_related"] or config.min_tokens > tiny["min_tokens"]
        raise InputError(
            source,
            f"too little text: {len(store)} passages, {tokens} tokens, but an episode "
            f"needs {need}+ passages and at least min_tokens={config.min_tokens} tokens (use a larger "
            f"source, or lower num_related/min_tokens{', e.g. --preset tiny' if smaller else ''})",
        )


def episode_results(source: str, episode_files: list[Path]) -> tuple[list[dict], dict]:
    """The episode shards' stats and the corpus summary (rejections and recognised words included);
    refuses a build that made no episode."""
    episode_stats = [json.loads(f.with_suffix(".json").read_text()) for f in episode_files]
    rejections: collections.Counter = collections.Counter()
    for s in episode_stats:
        rejections.update(s["rejections"])
    summary = episode_summary(episode_files)
    if summary["episodes"] == 0:
        raise InputError(
            source,
            f"no episode could be built ({dict(rejections)}); the source may be too small or too uniform for "
            "this config (try more text, a lower min_mask_occurrences, or more ner_labels)",
        )
    summary.update(rejections=dict(rejections), ner_words=sum(s["ner_words"] for s in episode_stats))
    return episode_stats, summary


def _build_locked(config: CorpusConfig, root: Path, reporter: Reporter) -> BuildResult:
    source = resolve_source(config)
    shards = read.plan_shards(
        source, streams_per_shard=config.streams_per_shard, hf_split=config.hf_split, hf_name=config.hf_name
    )
    read.check_language(shards, config.ner_model)
    cache_dir = root / ".cache"
    fingerprint = cached_fingerprint(source, cache_dir)
    build_id = build_identity(config, fingerprint)
    for v in list_versions(root) if root.exists() else []:
        existing = open_corpus(root / f"v{v}")
        if existing.manifest.get("build_id") == build_id:
            return BuildResult(existing, created=False, summary=existing.manifest.get("summary", {}))

    work = root / ".work" / build_id
    work.mkdir(parents=True, exist_ok=True)
    # Passages, their store and the index live in the shared cache; a version holds copies of the shards.
    passage_dir = cache_dir / f"passages-{passages_identity(config, fingerprint)}"
    seconds: dict[str, float] = {}  # this run's times: a resumed build spends nothing on finished units
    with build_executor(config) as executor:  # one pool of workers for every stage
        with timed(seconds, "read+clean+passages"):
            passage_files = run_read_stage(config, shards, passage_dir, reporter, executor)
        shard_stats, counts, dropped = read_counts(source, passage_files)
        with timed(seconds, "store"):
            store = run_store_stage(config, passage_files, counts["passages"], passage_dir, reporter)
        check_enough_text(config, store, source)
        with timed(seconds, "related"):
            retriever = run_related_stage(config, store, passage_dir, reporter)
        with timed(seconds, "episodes"):
            episode_files, seconds["ner"] = run_episode_stage(
                config, store, retriever, work, cache_dir, reporter, executor
            )
    seconds["episodes"] -= seconds["ner"]  # what assembly costs beyond NER
    episode_stats, summary = episode_results(source, episode_files)

    t = time.perf_counter()
    summary.update({k: counts[k] for k in ("articles", "pages", "passages", "words")}, dropped=dropped)
    manifest = {
        "name": config.name,
        "build_id": build_id,
        "schema_version": SCHEMA_VERSION,
        "memtrain_version": __version__,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "config": to_dict(config),
        "source": fingerprint,
        "counts": {k: summary[k] for k in ("pages", "articles", "passages", "words", "episodes", "tokens")},
        "summary": summary,
        "stages": {k: {"seconds": round(v, 3)} for k, v in seconds.items()},
    }
    stats = {"shards": shard_stats, "episode_shards": episode_stats, "seconds": seconds}
    final = publish_version(root, passage_files, episode_files, manifest, stats, started=t)
    seconds["write"] = time.perf_counter() - t
    shutil.rmtree(work, ignore_errors=True)
    return BuildResult(open_corpus(final), created=True, summary={**summary, "seconds": seconds})
