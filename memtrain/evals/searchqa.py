"""`memtrain eval search-qa`: multi-objective search QA (the paper's Table 2), generated and scored.

One call of :func:`evaluate_search_qa` does, in order:

1. check the output folder, the datasets and the retriever before any model loads;
2. load each benchmark's questions (a local folder of FlashRAG-style files, or the Hub) and compose them
   into `objectives`-question episodes (MEM1's composition), optionally a seeded sample of them;
3. open the retriever: BM25 over a passage collection in-process (its index built once beside it), or any
   Search-R1-compatible server by URL (memtrain's ``serve-retriever``, MEM1's e5 server); the run is named
   after what the hits depend on (`retriever_identity`: the index's content and settings, wherever it is
   searched from; a foreign server's URL), not after runtime settings such as the HTTP timeout;
4. run the constant-memory search agent (``memtrain.search.agent``) over every missing episode into the run
   folder, batch by batch (``memtrain.evals.harness``: per-item records, resumable, nothing redone);
5. score and report (``memtrain.evals.search_report``): ``results.json``, ``results.md``, ``accuracy.png``,
   ``scores.jsonl``, ``items.parquet``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import to_dict
from ..errors import ConfigError, InputError
from ..outputs import check_writable_output
from ..search import qa
from ..search.agent import SearchAgentConfig, rollout
from ..search.retriever import backend_identity
from ..search.settings import RetrieverSettings
from ..trainer.backends import GenerationBackend
from ..trainer.models import DEFAULT_MODEL
from . import harness, search_report
from .longdoc import update_stats, write_items_parquet

METHOD = "search-agent"


@dataclass
class SearchRunConfig:
    """What one search-QA run generates: the agent's settings (evaluation sampling) and the batching."""

    samples: int = field(default=1, metadata={"help": "Samples per episode (k)."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling (each batch derives its own)."})
    batch_size: int = field(default=16, metadata={"help": "Episodes whose calls are batched together."})
    agent: SearchAgentConfig = field(
        default_factory=SearchAgentConfig,
        metadata={"help": "The search agent: turns, token limits, top-k, sampling, history."},
    )

    method = METHOD

    def __post_init__(self) -> None:
        if self.samples < 1 or self.batch_size < 1:
            raise ConfigError("samples and batch_size must be at least 1")

    def generation_settings(self) -> dict[str, Any]:
        """Everything a record depends on but the model, the data and the retriever (added by the caller)."""
        agent = {k: v for k, v in to_dict(self.agent).items() if k not in ("group_size", "seed")}
        return {"method": METHOD, "seed": self.seed, "batch_size": self.batch_size, **agent}


@dataclass
class SearchQAEval(RetrieverSettings, harness.ModelSettings):
    """Which benchmarks, which model (`ModelSettings`), which retriever (`RetrieverSettings`); `run` says how
    to generate."""

    datasets: list[str] = field(
        default_factory=lambda: list(qa.DATASETS), metadata={"help": "Benchmarks, in the paper's order."}
    )
    data: str | None = field(
        default=None,
        metadata={
            "help": "Folder of <dataset>.jsonl (or <dataset>/test.jsonl, FlashRAG's layout), one file for "
            "one dataset, or a Hub id (default: RUC-NLPIR/FlashRAG_datasets)."
        },
    )
    split: str | None = field(
        default=None, metadata={"help": "Split, on the Hub or in a folder (default: test, else dev, train)."}
    )
    objectives: int = field(default=qa.OBJECTIVES, metadata={"help": "Questions per episode (MEM1: 2)."})
    limit: int | None = field(default=None, metadata={"help": "Episodes per dataset (default: all)."})
    sample_seed: int | None = field(
        default=None,
        metadata={"help": "Shuffle the composed episodes with this seed (default: in order)."},
    )
    run: SearchRunConfig = field(default_factory=SearchRunConfig)

    def __post_init__(self) -> None:
        self.datasets = qa.parse_datasets(self.datasets)
        if self.objectives < 1:
            raise ConfigError(f"objectives must be at least 1, got {self.objectives}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be at least 1 episode per dataset (or unset), got {self.limit}")
        self.check_retriever()
        self.check_model()


@dataclass
class SearchEvalResult:
    run: Path
    results: dict[str, Any]
    files: search_report.ReportFiles
    summary: harness.RunSummary
    episodes: dict[str, int]  # episodes evaluated per dataset


# --- data ---------------------------------------------------------------------------------------------------


def retriever_identity(retriever: Any) -> dict[str, Any]:
    """What a record's retrieved passages depend on: the retriever's own identity (BM25: the index's content
    and settings, the same in-process and through memtrain's server; another server: its URL), else its
    type."""
    return backend_identity(retriever) or {"kind": type(retriever).__name__}


def open_retriever(spec: SearchQAEval, log: Callable[[str], None] | None = None):
    """The search backend and what identifies it (a server is asked here, before any model loads)."""
    retriever = spec.open_retriever(log)
    return retriever, retriever_identity(retriever)


# --- generation ---------------------------------------------------------------------------------------------


def search_method(retriever) -> harness.Method:
    """The harness method of the search agent: one batch of episodes → one record per episode × sample."""

    def run(
        episodes: Sequence[Mapping[str, Any]],
        backend: GenerationBackend,
        config: SearchRunConfig,
        seed: int,
        on_call: Callable | None = None,
    ) -> harness.BatchResult:
        start = time.perf_counter()
        agent = dataclasses.replace(config.agent, group_size=config.samples, seed=seed)
        trajectories = rollout(episodes, backend, agent, retriever, seed=seed, on_call=on_call)
        seconds = time.perf_counter() - start
        by_id = {str(e["episode_id"]): e for e in episodes}
        records, prompt_total, completion_total = [], 0, 0
        for trajectory in trajectories:
            episode = by_id[trajectory.episode_id]
            prompts = [len(t.generation.prompt_ids) for t in trajectory.turns]
            completion = sum(len(t.generation.completion_ids) for t in trajectory.turns)
            prompt_total += sum(prompts)
            completion_total += completion
            final = trajectory.turns[-1].generation if trajectory.turns else None
            response = final.text if final is not None else None
            records.append(
                {
                    "key": harness.item_key(trajectory.episode_id, trajectory.sample),
                    "episode_id": trajectory.episode_id,
                    "question_id": str(episode.get("question_id", trajectory.episode_id)),
                    "dataset": episode["dataset"],
                    "sample": trajectory.sample,
                    "questions": list(episode["questions"]),
                    "golden_answers": [list(g) for g in episode["golden_answers"]],
                    "response": response,
                    "failed": not (response or "").strip(),
                    "finish_reason": final.finish_reason if final is not None else None,
                    "turns": len(trajectory.turns),
                    "searches": sum(t.kind == "search" for t in trajectory.turns),
                    "states": list(trajectory.memories),
                    "actions": list(getattr(trajectory, "actions", []) or []),
                    "prompt_tokens": sum(prompts),
                    "max_prompt_tokens": max(prompts, default=0),
                    "completion_tokens": completion,
                    "seconds": seconds / max(len(trajectories), 1),
                }
            )
        return harness.BatchResult(records, prompt_total, completion_total, seconds)

    return run


def data_identity(objectives: int, sample_seed: int | None, split: str | None) -> str:
    """What every dataset's episodes depend on besides its questions (those are checked per dataset, so a
    run folder takes more datasets, or more episodes of one, without regenerating anything)."""
    payload = json.dumps(
        {"objectives": objectives, "sample_seed": sample_seed, "split": split}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def check_sources(run: Path, sources: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The datasets' sources recorded in the run folder, with `sources` added; a dataset recorded from other
    questions (another file, changed content, another Hub split) is refused: its records would mix."""
    config_file = run / harness.CONFIG_FILE
    recorded = json.loads(config_file.read_text()).get("sources", {}) if config_file.exists() else {}
    for dataset, source in sources.items():
        if dataset in recorded and recorded[dataset] != source:
            raise InputError(
                config_file,
                f"{dataset} was evaluated in this run from other questions ({recorded[dataset]}); "
                "use another output folder (nothing was changed)",
            )
    return {**recorded, **sources}


def run_name(
    model: str, config: SearchRunConfig, data: str, retriever: Mapping[str, Any], backend: str
) -> str:
    """E.g. ``smollm2-135m-instruct.search-agent.constant.t6-r1000-o1000-k3.t0-p0.95.bm25.d1a2b3c4.h5e6f7a``:
    model, method, history, budgets, sampling, retriever, data checksum, then a hash of every setting."""
    agent = config.agent
    settings = {**config.generation_settings(), "model": model, "data": data, "retriever": dict(retriever),
                "backend": backend}  # fmt: skip
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:7]
    budget = f"t{agent.max_turns}-r{agent.response_tokens}-o{agent.observation_tokens}-k{agent.topk}"
    sampling = f"t{agent.temperature:g}-p{agent.top_p:g}"
    parts = [harness.slug(model), METHOD, agent.history, budget, sampling, str(retriever["kind"])]
    return ".".join([*parts, f"d{data[:8]}", f"h{digest}"])


def evaluate_search_qa(
    spec: SearchQAEval,
    out: str | Path,
    *,
    on_progress: Callable[[harness.Progress], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
    backend: GenerationBackend | None = None,
    retriever: Any = None,
) -> SearchEvalResult:
    """Evaluate `spec.model` on search QA into ``out/<run name>``; see the module docstring. `backend` and
    `retriever` reuse loaded ones (benchmarks and tests run several evaluations on one)."""
    stage = on_stage or (lambda message: None)
    out = check_writable_output(out, kind="dir", what="--out")
    model = spec.model or DEFAULT_MODEL
    config = spec.run

    stage("loading the questions")
    episodes, identities = {}, {}
    for dataset in spec.datasets:
        source = qa.question_source(spec.data, dataset, spec.datasets, spec.split)
        questions = qa.load_questions(source, dataset, split=spec.split)
        episodes[dataset] = qa.select_episodes(questions, spec.objectives, spec.limit, spec.sample_seed)
        if not episodes[dataset]:
            raise InputError(source or qa.HUB_ID, f"{dataset}: fewer than {spec.objectives} questions")
        identities[dataset] = qa.source_identity(source, dataset, spec.split)
    identity = data_identity(spec.objectives, spec.sample_seed, spec.split)

    stage("opening the retriever")
    if retriever is None:
        retriever, retriever_id = open_retriever(spec, log=stage)
    else:
        retriever_id = retriever_identity(retriever)
    stage(f"loading {model}")
    if backend is None:
        backend = spec.load_backend()

    name = run_name(model, config, identity, retriever_id, spec.backend_label)
    generation = {**config.generation_settings(), "model": model, "backend": spec.backend_label,
                  "retriever": retriever_id}  # fmt: skip
    run = harness.open_run(out, name, {"generation": generation})
    sources = check_sources(run, identities)
    harness.write_run_config(
        run,
        {
            "task": search_report.TASK,
            "model": model,
            "backend": spec.backend,
            "dtype": spec.dtype,
            "method": METHOD,
            "generation": generation,
            "retriever": retriever_id,
            "objectives": spec.objectives,
            "samples": config.samples,
            "datasets": sorted(sources, key=search_report.TABLE2_DATASETS.index),
            "limit": spec.limit,
            "sample_seed": spec.sample_seed,
            "split": spec.split,
            # what a table row is keyed on: every setting but which datasets (runs of other datasets join it)
            "data": {"identity": identity, "objectives": spec.objectives, "sample_seed": spec.sample_seed},
            "sources": sources,
            "agent": to_dict(config.agent),
        },
    )
    total = sum(len(e) for e in episodes.values()) * config.samples
    rows = {d: (lambda eps=eps: eps) for d, eps in episodes.items()}
    batches = harness.fixed_batches(rows, config.batch_size, order=False)
    stage("generating")
    summary = harness.run_items(
        batches, total, backend, config, run, on_progress, method=search_method(retriever),
        label=search_report.column,
    )  # fmt: skip
    update_stats(run, summary)
    write_items_parquet(run)
    stage("scoring")
    files = search_report.write_report(run)
    return SearchEvalResult(run, files.results, files, summary, {d: len(e) for d, e in episodes.items()})
