"""`memtrain eval hotpotqa`: long-document HotpotQA (RULER-HotpotQA) built, generated and scored.

One call of :func:`evaluate_hotpotqa` does, in order, each step skipped when its result is already there:

1. check the output folder and the arguments (lengths the data can build) before any model loads;
2. load the questions (a local HotpotQA file or a Hub id) or MemAgent's released ``eval_{N}.json`` files;
3. optionally drop the questions the model answers with no document (MemAgent's no-context filter; the kept
   ids are saved, so the filter never runs twice for the same model and data);
4. build (or reuse) the instance set as a versioned corpus (``memtrain.tasks.hotpotqa``);
5. generate every missing item into the run folder (``memtrain.evals.harness``);
6. score and report: ``results.json``, ``results.md``, ``accuracy.png``, ``items.parquet``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..config import to_dict
from ..errors import ConfigError
from ..io import atomic_path, write_json_atomic
from ..outputs import check_writable_output
from ..pipeline.progress import Reporter
from ..tasks import hotpotqa
from ..trainer.backends import GenerationBackend, SamplingParams
from ..trainer.chunking import chat_prompt_ids
from ..trainer.models import DEFAULT_MODEL
from ..trainer.rewards import parse_answer, sub_em
from . import harness, report

NO_CONTEXT_SAMPLES = 2  # MemAgent's filter: two samples at T=1.0, top-p 0.7, 512 new tokens
NO_CONTEXT_SAMPLING = {"temperature": 1.0, "top_p": 0.7, "max_new_tokens": 512}


@dataclass
class HotpotQAEval(harness.ModelSettings):
    """Where the data comes from, which instances, which model (`ModelSettings`); `run` says how to
    generate."""

    data: str | None = field(
        default=None,
        metadata={
            "help": "HotpotQA file (.json/.jsonl/.parquet), Hub id, or a folder of MemAgent eval_{N}.json."
        },
    )
    split: str = field(default=hotpotqa.DEFAULT_SPLIT, metadata={"help": "Split, for a Hub id."})
    lengths: list[int] = field(
        default_factory=lambda: list(hotpotqa.DEFAULT_LENGTHS), metadata={"help": "Numbers of documents N."}
    )
    questions: int = field(default=128, metadata={"help": "Questions evaluated at every N (the first kept)."})
    instance_seed: int = field(default=0, metadata={"help": "Seed of the instance builder."})
    no_context_filter: bool = field(
        default=False, metadata={"help": "Drop questions the model answers without any document (MemAgent)."}
    )
    instances_root: str = field(default="corpora", metadata={"help": "Where instance sets are built."})
    run: harness.EvalConfig = field(default_factory=harness.EvalConfig)

    def __post_init__(self) -> None:
        if self.questions < 1:
            raise ConfigError(f"questions must be at least 1, got {self.questions}")
        self.lengths = hotpotqa.parse_lengths(self.lengths)
        self.check_model()


@dataclass
class EvalResult:
    run: Path  # the run folder
    results: dict[str, Any]  # results.json
    files: report.ReportFiles
    summary: harness.RunSummary
    instances: Path  # the instance set's version folder
    kept: int | None  # questions the no-context filter kept (None: not filtered)


def data_identity(fingerprint: dict, instance_seed: int) -> str:
    """What a run's records depend on from the data: the source's content (or Hub id and revision) and the
    builder's seed. Not the lengths or the number of questions: adding either reuses every record."""
    files = [f.get("sha256") for f in fingerprint.get("files") or []]
    key = files or [fingerprint.get("id"), fingerprint.get("split"), fingerprint.get("revision")]
    payload = json.dumps(
        {"source": key, "seed": instance_seed, "builder": hotpotqa.BUILDER_VERSION}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def no_context_kept(
    questions: list[hotpotqa.Question],
    backend: GenerationBackend,
    cache_file: Path,
    seed: int,
    on_progress: Callable[[int, int], None] | None = None,
    batch: int = 64,
) -> list[str]:
    """The ids of the questions the model never answers (sub_em) from the question alone, in 2 samples."""
    if cache_file.exists():
        return hotpotqa.load_kept_ids(cache_file)
    tokenizer = backend.tokenizer
    params = SamplingParams(
        NO_CONTEXT_SAMPLING["max_new_tokens"],
        NO_CONTEXT_SAMPLING["temperature"],
        NO_CONTEXT_SAMPLING["top_p"],
    )
    kept = []
    for start in range(0, len(questions), batch):
        part = questions[start : start + batch]
        prompts = [
            chat_prompt_ids(tokenizer, hotpotqa.no_context_prompt(q.question))
            for q in part
            for _ in range(NO_CONTEXT_SAMPLES)
        ]
        call = SamplingParams(params.max_new_tokens, params.temperature, params.top_p, seed + start)
        generations = backend.generate(prompts, call)
        for i, q in enumerate(part):
            samples = generations[i * NO_CONTEXT_SAMPLES : (i + 1) * NO_CONTEXT_SAMPLES]
            if not any(sub_em(parse_answer(g.text)[0], q.answers) for g in samples):
                kept.append(q.question_id)
        if on_progress is not None:
            on_progress(min(start + batch, len(questions)), len(questions))
    hotpotqa.save_kept_ids(
        cache_file,
        kept,
        samples=NO_CONTEXT_SAMPLES,
        sampling=NO_CONTEXT_SAMPLING,
        seed=seed,
        checked=len(questions),
    )
    return kept


def write_items_parquet(run: Path) -> Path:
    """``items.parquet``: every record of the run (prediction, memories, tokens), for DuckDB or pandas."""
    log = harness.ItemLog(run / harness.ITEMS_FILE)
    rows = [log.records[k] for k in sorted(log.records)]
    path = run / "items.parquet"
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows), tmp, compression="zstd")
    return path


def update_stats(run: Path, summary: harness.RunSummary) -> dict:
    """Add this call's generated tokens and seconds to the run's totals; keep the peak memory seen."""
    path = run / "stats.json"
    stats = json.loads(path.read_text()) if path.exists() else {}
    stats["completion_tokens"] = stats.get("completion_tokens", 0) + summary.completion_tokens
    stats["seconds"] = stats.get("seconds", 0.0) + summary.seconds
    stats["peak_rss_mib"] = max(stats.get("peak_rss_mib", 0.0), round(summary.peak_rss_mib, 1))
    if summary.peak_gpu_mib is not None:
        stats["peak_gpu_mib"] = max(stats.get("peak_gpu_mib", 0.0), round(summary.peak_gpu_mib, 1))
    if stats["seconds"] > 0:
        stats["tokens_per_s"] = stats["completion_tokens"] / stats["seconds"]
    write_json_atomic(path, stats)
    return stats


def evaluate_hotpotqa(
    spec: HotpotQAEval,
    out: str | Path,
    *,
    reporter: Reporter | None = None,
    on_progress: Callable[[harness.Progress], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
    backend: GenerationBackend | None = None,
) -> EvalResult:
    """Evaluate `spec.model` on long-document HotpotQA into ``out/<run name>``; see the module docstring.

    `backend` reuses an already loaded model (the benchmark and tests run several evaluations on one).
    """
    stage = on_stage or (lambda message: None)
    out = check_writable_output(out, kind="dir", what="--out")
    check_writable_output(spec.instances_root, kind="dir", what="instances root")
    model = spec.model or DEFAULT_MODEL
    config = spec.run
    chunk = config.agent.chunk_tokens

    stage("loading the data")
    memagent = spec.data is not None and hotpotqa.is_memagent_source(spec.data)
    if memagent:
        questions, pool = None, None
        hotpotqa.memagent_files(spec.data, spec.lengths)  # a missing eval_{N}.json fails here
    else:
        questions = hotpotqa.load_questions(spec.data, split=spec.split)
        pool = hotpotqa.DocumentPool.from_questions(questions)
        hotpotqa.check_lengths(questions, pool, spec.lengths)
    fingerprint = hotpotqa.source_fingerprint(spec.data, split=spec.split)
    identity = data_identity(fingerprint, spec.instance_seed)

    stage(f"loading {model}")
    if backend is None:
        backend = spec.load_backend()
    name = harness.run_name(model, config, identity, spec.backend_label)
    settings = {"generation": {**config.generation_settings(), "model": model, "backend": spec.backend_label}}
    run = harness.open_run(out, name, settings)

    kept = None
    if questions is not None:
        selected = questions
        if spec.no_context_filter:
            cache = out / "filters" / f"no-context.{harness.slug(model)}.{identity[:12]}.json"
            stage("no-context filter")
            ids = no_context_kept(questions, backend, cache, config.seed)
            selected = hotpotqa.apply_kept_ids(questions, ids)
            kept = len(selected)
            if not selected:
                raise ConfigError(f"the no-context filter kept no question of {len(questions)} ({cache})")
        selected = selected[: spec.questions]
        stage("building instances")
        corpus = hotpotqa.build_instances(
            selected,
            spec.lengths,
            spec.instance_seed,
            spec.instances_root,
            f"hotpotqa-{_source_name(spec.data, spec.split)}",
            tokenizer=spec.tokenizer or model,
            chunk_size=chunk,
            source_fingerprint=fingerprint,
            pool=pool,
            reporter=reporter,
        )
        per_length = len(selected)
    else:
        stage("reading MemAgent's instances")
        corpus = hotpotqa.build_memagent_instances(
            spec.data, spec.instances_root, "hotpotqa-memagent", tokenizer=spec.tokenizer or model,
            chunk_size=chunk, lengths=spec.lengths, reporter=reporter,
        )  # fmt: skip
        per_length = spec.questions

    def rows(num_docs: int):
        return lambda: hotpotqa.read_instances(corpus, [num_docs], limit=spec.questions)

    run_config = {
        "task": "hotpotqa",
        "model": model,
        "backend": spec.backend,
        "dtype": spec.dtype,
        **settings,
        "method": config.method,
        "templates": config.templates,
        "samples": config.samples,
        "lengths": spec.lengths,
        "questions": spec.questions,
        "no_context_filter": spec.no_context_filter,
        "data": {"identity": identity, "source": fingerprint, "instances": str(corpus.path)},
        "agent": to_dict(config.agent),
    }
    harness.write_run_config(run, run_config)
    total = per_length * len(spec.lengths) * config.samples
    batches = harness.fixed_batches({n: rows(n) for n in spec.lengths}, config.batch_size)
    stage("generating")
    summary = harness.run_items(batches, total, backend, config, run, on_progress)
    update_stats(run, summary)
    write_items_parquet(run)
    stage("scoring")
    files = report.write_report(run)
    return EvalResult(run, files.results, files, summary, corpus.path, kept)


def _source_name(data: str | None, split: str) -> str:
    if data is None:
        return split
    path = Path(data)
    return harness.slug(path.stem if path.exists() else str(data).replace("/", "-")) + (
        "" if path.exists() else f"-{split}"
    )
