"""Generation for `memtrain eval`: run a method over instances, append each finished item durably, resume.

A *run* is one model × method × prompt set × budgets × sampling × data source; its folder name says so
(:func:`run_name`). Inside it, ``items.jsonl`` holds one record per finished (instance, sample), keyed
``"<episode_id>#<sample>"``. Instances are processed in fixed batches (by length, then by position in the
question set), each batch with its own seed, so a run killed at any point and started again regenerates only
the batches that had not finished, and produces the same records an uninterrupted run would have. Adding a
length, questions or samples never regenerates what is already there.

Scoring is separate (``memtrain.evals.scoring``): records keep the raw final response, never a score.

Methods:

* ``memory-agent`` — the memory agent (``memtrain.trainer.agent.rollout``) with no recall probe: the
  document chunk by chunk, the answer from memory alone; every instance of a batch advances in one backend
  call per turn.
* ``full-context`` — one call with the whole document, cut in the middle (its first and last halves kept)
  when the call would exceed the model's window; the record says how many tokens were cut.
* ``truncate`` — the same single call limited to the memory agent's per-call budget (equal compute per call).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import resource
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MemtrainError
from ..io import exclusive_lock, write_json_atomic
from ..tasks.base import row_problem
from ..trainer import prompts
from ..trainer.agent import AgentConfig, CallStats, rollout
from ..trainer.backends import BACKENDS, GenerationBackend, SamplingParams, load_backend
from ..trainer.chunking import chat_prompt_ids, encode
from ..trainer.models import WEIGHT_DTYPES

METHODS = ("memory-agent", "full-context", "truncate")
ITEMS_FILE = "items.jsonl"
CONFIG_FILE = "config.json"


@dataclass
class ModelSettings:
    """The model an evaluation runs and how it is served: one definition for every `memtrain eval` task."""

    model: str | None = field(
        default=None, metadata={"help": "Asset name, Hub id, folder or .gguf (default SmolLM2)."}
    )
    backend: str = field(default="transformers", metadata={"help": "transformers, vllm or openai."})
    base_url: str | None = field(default=None, metadata={"help": "Server URL, for the openai backend."})
    tokenizer: str | None = field(
        default=None,
        metadata={"help": "Local tokenizer of the served model (openai backend; default: model)."},
    )
    device: str | None = field(default=None, metadata={"help": "cpu or cuda (default: cuda when present)."})
    dtype: str | None = field(
        default=None,
        metadata={
            "help": "Weights' dtype, transformers and vllm backends: float32, bfloat16 or float16 (default: "
            "the checkpoint's)."
        },
    )

    def check_model(self) -> None:
        """A one-line ConfigError for a backend or dtype no run can use, before anything loads."""
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if self.dtype is not None and self.dtype not in WEIGHT_DTYPES:
            raise ConfigError(f"dtype {self.dtype!r}: choose one of {', '.join(WEIGHT_DTYPES)}")
        if self.dtype is not None and self.backend == "openai":
            raise ConfigError("dtype: the openai backend serves the server's weights; unset --dtype")

    def load_backend(self) -> GenerationBackend:
        """The generation backend these settings name."""
        if self.backend == "openai":
            return load_backend(self.backend, self.model, base_url=self.base_url, tokenizer=self.tokenizer)
        return load_backend(self.backend, self.model, device=self.device, dtype=self.dtype)

    @property
    def backend_label(self) -> str:
        """The backend as a run's identity records it: its name, and the dtype when one is asked for (so a
        bfloat16 run never resumes a float32 one's records)."""
        return self.backend if self.dtype is None else f"{self.backend}-{self.dtype}"


@dataclass
class EvalConfig:
    """What one evaluation run generates. The agent's budgets and sampling are the paper's evaluation ones."""

    method: str = field(default="memory-agent", metadata={"help": "memory-agent, full-context or truncate."})
    templates: str = field(
        default="memtrain", metadata={"help": "Prompt set: memtrain (the paper's) or memagent."}
    )
    samples: int = field(default=1, metadata={"help": "Samples per instance (k)."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling (each batch derives its own)."})
    batch_size: int = field(
        default=16, metadata={"help": "Instances whose calls are batched together (a fixed partition)."}
    )
    context_window: int | None = field(
        default=None,
        metadata={"help": "full-context: tokens one call may hold (default: the model's own window)."},
    )
    agent: AgentConfig = field(
        default_factory=lambda: AgentConfig.preset("paper", "eval", chunk_tokens=5000, recall=False),
        metadata={"help": "The memory agent's budgets and sampling (evaluation: 5,000-token chunks)."},
    )

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method {self.method!r} is unknown; choose one of {', '.join(METHODS)}")
        if self.templates not in prompts.TEMPLATE_SETS:
            raise ConfigError(
                f"templates {self.templates!r} is unknown; choose one of {', '.join(prompts.TEMPLATE_SETS)}"
            )
        if self.samples < 1 or self.batch_size < 1:
            raise ConfigError("samples and batch_size must be at least 1")
        if self.context_window is not None and self.context_window < 1:
            raise ConfigError(f"context_window must be at least 1, got {self.context_window}")

    def generation_settings(self) -> dict[str, Any]:
        """Everything a record depends on (less the model and the data, which the caller adds)."""
        agent = self.agent
        settings: dict[str, Any] = {
            "method": self.method,
            "templates": self.templates,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "temperature": agent.temperature,
            "top_p": agent.top_p,
            "response_tokens": agent.response_tokens,
        }
        if self.method == "memory-agent":
            settings.update(
                problem_tokens=agent.problem_tokens,
                chunk_tokens=agent.chunk_tokens,
                memory_tokens=agent.memory_tokens,
                initial_memory=agent.initial_memory,
            )
        elif self.method == "truncate":
            settings["call_tokens"] = agent.call_tokens
        else:
            settings["context_window"] = self.context_window
        return settings


def slug(text: str) -> str:
    """A file-name-safe form of a model name or path: its last path part, lower case."""
    name = Path(str(text).rstrip("/")).name or str(text)
    name = re.sub(r"\.gguf$", "", name, flags=re.I)
    return re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-") or "model"


def run_name(model: str, config: EvalConfig, data_sha256: str, backend: str) -> str:
    """E.g. ``smollm2-135m-instruct.memory-agent.memtrain.c5000-m1024-r1024.t0.7-p0.95.d3f2a91c0.h1b2c3d``:
    model, method, prompt set, budgets, sampling and data checksum, then a hash of every setting."""
    agent = config.agent
    if config.method == "memory-agent":
        budget = f"c{agent.chunk_tokens}-m{agent.memory_tokens}-r{agent.response_tokens}"
    elif config.method == "truncate":
        budget = f"call{agent.call_tokens}-r{agent.response_tokens}"
    else:
        budget = f"w{config.context_window or 'model'}-r{agent.response_tokens}"
    sampling = f"t{agent.temperature:g}-p{agent.top_p:g}"
    settings = {**config.generation_settings(), "model": model, "data": data_sha256, "backend": backend}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:7]
    return ".".join(
        [slug(model), config.method, config.templates, budget, sampling, f"d{data_sha256[:8]}", f"h{digest}"]
    )


# --- the per-item log ---------------------------------------------------------------------------------------


class ItemLog:
    """``items.jsonl`` of a run: records appended as batches finish, each append flushed to disk (fsync).

    A line cut short by a kill is dropped when the log is opened (the file is cut back to its last complete
    line), so the next append starts clean.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, dict] = {}
        if not path.exists():
            return
        data = path.read_bytes()
        good = 0
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            try:
                record = json.loads(line)
            except ValueError:
                break
            if not isinstance(record, dict) or "key" not in record:
                raise MemtrainError(f"{path}: line {len(self.records) + 1} is not an item record")
            self.records[record["key"]] = record
            good += len(line)
        if good < len(data):
            with open(path, "r+b") as handle:
                handle.truncate(good)

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def append(self, records: Sequence[dict]) -> None:
        if not records:
            return
        payload = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records).encode()
        with open(self.path, "ab") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        for record in records:
            self.records[record["key"]] = record


# --- methods ------------------------------------------------------------------------------------------------


def item_key(episode_id: str, sample: int) -> str:
    return f"{episode_id}#{sample}"


def batch_seed(seed: int, cell: int | str, batch: int) -> int:
    """The sampling seed of one fixed batch of a cell (a length N, a dataset): independent of what else the
    run holds or has finished."""
    digest = hashlib.sha256(f"{seed}:{cell}:{batch}".encode()).digest()
    return int.from_bytes(digest[:4], "little") % (2**31)


def model_window(backend: GenerationBackend) -> int | None:
    """The most tokens one call may hold, where the backend knows it."""
    for path in (
        "max_model_len",
        "model.config.max_position_embeddings",
        "llm.llm_engine.model_config.max_model_len",
    ):
        value: Any = backend
        for part in path.split("."):
            value = getattr(value, part, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def cut_middle(ids: list[int], budget: int) -> list[int]:
    """The first and last halves of `budget` tokens of `ids` (unchanged when it fits)."""
    if len(ids) <= budget:
        return ids
    head = budget - budget // 2
    return ids[:head] + ids[len(ids) - budget // 2 :] if budget > 0 else []


@dataclass
class BatchResult:
    records: list[dict]
    prompt_tokens: int
    completion_tokens: int
    seconds: float


def _record(
    instance: Mapping[str, Any], sample: int, response: str | None, finish_reason: str | None, **fields: Any
) -> dict[str, Any]:
    """One item's record: its identity and gold, the final response (empty or missing: failed), `fields`."""
    answers = instance.get("answers")
    answers = list(answers) if answers is not None and not isinstance(answers, str) else [instance["answer"]]
    answered = bool((response or "").strip())
    return {
        "key": item_key(str(instance["episode_id"]), sample),
        "episode_id": str(instance["episode_id"]),
        "question_id": str(instance.get("question_id", instance["episode_id"])),
        "num_docs": int(instance.get("num_docs", 0)),
        "sample": sample,
        "answers": [str(a) for a in answers],
        "response": response,
        "failed": not answered,
        "error": None if answered else "empty response",
        "finish_reason": finish_reason,
        **fields,
    }


def run_memory_agent(
    instances: Sequence[Mapping[str, Any]],
    backend: GenerationBackend,
    config: EvalConfig,
    seed: int,
    on_call: Callable | None = None,
) -> BatchResult:
    start = time.perf_counter()
    agent = dataclasses.replace(config.agent, group_size=config.samples, recall=False)
    templates = prompts.TEMPLATE_SETS[config.templates]
    trajectories = rollout(instances, backend, agent, seed=seed, templates=templates, on_call=on_call)
    seconds = time.perf_counter() - start
    by_episode = {str(i["episode_id"]): i for i in instances}
    doc_tokens = {key: len(encode(backend.tokenizer, str(i["text"]))) for key, i in by_episode.items()}
    records, prompt_tokens, completion_tokens = [], 0, 0
    for trajectory in trajectories:
        instance = by_episode[trajectory.episode_id]
        final = trajectory.turns[-1].generation if trajectory.turns else None
        used = sum(len(t.generation.prompt_ids) for t in trajectory.turns)
        generated = sum(len(t.generation.completion_ids) for t in trajectory.turns)
        prompt_tokens += used
        completion_tokens += generated
        records.append(
            _record(
                instance,
                trajectory.sample,
                final.text if final is not None else None,
                final.finish_reason if final is not None else None,
                memories=trajectory.memories,
                num_chunks=trajectory.num_chunks,
                doc_tokens=doc_tokens[trajectory.episode_id],
                cut_tokens=0,
                prompt_tokens=used,
                completion_tokens=generated,
                seconds=seconds / max(len(trajectories), 1),
            )
        )
    return BatchResult(records, prompt_tokens, completion_tokens, seconds)


def run_single_call(
    instances: Sequence[Mapping[str, Any]],
    backend: GenerationBackend,
    config: EvalConfig,
    seed: int,
    on_call: Callable | None = None,
) -> BatchResult:
    """full-context or truncate: one call per sample with the problem and the document (cut to fit)."""
    agent = config.agent
    template = prompts.TEMPLATE_SETS[config.templates]["context"]
    tokenizer = backend.tokenizer
    if config.method == "truncate":
        call_budget = agent.call_tokens
    else:
        call_budget = config.context_window or model_window(backend)
        if call_budget is None:
            raise ConfigError(
                "full-context: the backend does not say how long its window is; pass -o context_window=N"
            )
    prompt_ids, metas = [], []
    for instance in instances:
        problem = row_problem(instance, instance.get("question"))
        overhead = len(chat_prompt_ids(tokenizer, prompts.render_context(problem, "", template)))
        doc_ids = encode(tokenizer, str(instance["text"]))
        budget = call_budget - agent.response_tokens - overhead
        if budget < 1:
            raise ConfigError(
                f"{config.method}: the prompt without the document takes {overhead} tokens; with "
                f"response_tokens={agent.response_tokens} nothing of the document fits in {call_budget}"
            )
        kept = cut_middle(doc_ids, budget)
        document = tokenizer.decode(kept, skip_special_tokens=True)
        ids = chat_prompt_ids(tokenizer, prompts.render_context(problem, document, template))
        for sample in range(config.samples):
            prompt_ids.append(ids)
            metas.append((instance, sample, len(doc_ids), len(doc_ids) - len(kept)))
    start = time.perf_counter()
    params = SamplingParams(agent.response_tokens, agent.temperature, agent.top_p, seed)
    generations = backend.generate(prompt_ids, params)
    seconds = time.perf_counter() - start
    prompt_tokens = sum(len(p) for p in prompt_ids)
    completion_tokens = sum(len(g.completion_ids) for g in generations)
    if on_call is not None:
        on_call(CallStats("call", 0, len(prompt_ids), prompt_tokens, completion_tokens, seconds))
    records = []
    for (instance, sample, doc_tokens, cut), generation in zip(metas, generations, strict=True):
        records.append(
            _record(
                instance,
                sample,
                generation.text,
                generation.finish_reason,
                memories=[],
                num_chunks=0,
                doc_tokens=doc_tokens,
                cut_tokens=cut,
                prompt_tokens=len(generation.prompt_ids),
                completion_tokens=len(generation.completion_ids),
                seconds=seconds / max(len(generations), 1),
            )
        )
    return BatchResult(records, prompt_tokens, completion_tokens, seconds)


# --- a run --------------------------------------------------------------------------------------------------


@dataclass
class Progress:
    """What the harness reports after every batch (and, for the memory agent, every turn)."""

    done: int  # items finished, this run and earlier ones
    total: int
    cell: int | str  # the length N (long-document QA) or the dataset (search QA) being generated
    completion_tokens: int  # generated by this process so far
    seconds: float  # of generation by this process so far
    detail: str = ""

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


@dataclass
class RunSummary:
    path: Path
    items: int  # records in the run
    generated: int  # items generated by this call (0: everything was cached)
    seconds: float
    completion_tokens: int
    peak_rss_mib: float
    peak_gpu_mib: float | None


def peak_memory() -> tuple[float, float | None]:
    """Peak resident memory of this process in MiB, and the GPU's peak allocation when torch used one."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    gpu = None
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            gpu = torch.cuda.max_memory_allocated() / 2**20
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return rss, gpu


def open_run(out: Path, name: str, settings: dict[str, Any]) -> Path:
    """Create (or reopen) the run folder ``out/name`` and check its recorded settings are these."""
    run = out / name
    run.mkdir(parents=True, exist_ok=True)
    config_file = run / CONFIG_FILE
    if config_file.exists():
        try:
            recorded = json.loads(config_file.read_text())
        except ValueError:
            raise MemtrainError(f"{config_file}: not valid JSON; it is not memtrain's run record") from None
        if recorded.get("generation") != settings.get("generation"):
            raise MemtrainError(
                f"{config_file}: this run folder was made with other generation settings; "
                "use another output folder (nothing was changed)"
            )
    return run


class _Tally:
    """Items, generated tokens and generation seconds of one `run_items` call, reported as `Progress`."""

    def __init__(
        self,
        log: ItemLog,
        total: int,
        on_progress: Callable[[Progress], None] | None,
        label: Callable[[int | str], str],
    ) -> None:
        self.log, self.total, self.on_progress, self.label = log, total, on_progress, label
        self.generated = self.completion_tokens = 0
        self.seconds = 0.0

    def report(self, cell: int | str, detail: str, tokens: int = 0, seconds: float = 0.0) -> None:
        if self.on_progress is not None:
            done = len(self.log.records)
            tokens, seconds = self.completion_tokens + tokens, self.seconds + seconds
            self.on_progress(
                Progress(done, self.total, cell, tokens, seconds, f"{self.label(cell)}: {detail}")
            )

    def call_reporter(self, cell: int | str, index: int) -> Callable[[CallStats], None]:
        """An `on_call` that reports every backend call of one batch as it finishes."""
        tokens, seconds = 0, 0.0

        def on_call(stats: CallStats) -> None:
            nonlocal tokens, seconds
            tokens += stats.completion_tokens
            seconds += stats.seconds
            where = f"batch {index + 1}, {stats.phase} {stats.step + 1}: {stats.prompts} prompts"
            self.report(cell, where, tokens, seconds)

        return on_call


Method = Callable[[Sequence[Mapping[str, Any]], GenerationBackend, Any, int, Callable | None], BatchResult]


def run_items(
    batches: Iterable[tuple[int | str, int, list[dict]]],
    total: int,
    backend: GenerationBackend,
    config: Any,
    run: Path,
    on_progress: Callable[[Progress], None] | None = None,
    *,
    method: Method | None = None,
    label: Callable[[int | str], str] = lambda cell: f"N={cell}",
) -> RunSummary:
    """Generate every missing item of `batches` — ``(cell, batch index, instances)`` — into ``run``.

    `method(instances, backend, config, seed, on_call)` generates one batch (default: the long-document
    method `config.method` names); `config` needs ``samples`` and ``seed``. A batch with any missing item is
    generated whole (its samples depend on its composition and seed, so a rerun reproduces them) and its new
    records are appended. Holds the run's lock meanwhile: a second process on the same run is refused.
    """
    start = time.perf_counter()
    if method is None:
        method = run_memory_agent if config.method == "memory-agent" else run_single_call
    with exclusive_lock(run, "generating this evaluation run"):
        log = ItemLog(run / ITEMS_FILE)
        tally = _Tally(log, total, on_progress, label)
        if on_progress is not None:  # the bar's total (and what is cached) before the first batch
            on_progress(Progress(len(log.records), total, "", 0, 0.0, "generating"))
        for cell, index, instances in batches:
            keys = [item_key(str(i["episode_id"]), s) for i in instances for s in range(config.samples)]
            if all(key in log for key in keys):
                continue
            tally.report(cell, f"batch {index + 1}, {len(instances)} instances")
            seed = batch_seed(config.seed, cell, index)
            result = method(instances, backend, config, seed, tally.call_reporter(cell, index))
            fresh = [r for r in result.records if r["key"] not in log]
            log.append(fresh)
            tally.generated += len(fresh)
            tally.completion_tokens += result.completion_tokens
            tally.seconds += result.seconds
            tally.report(cell, f"batch {index + 1} done")
    rss, gpu = peak_memory()
    return RunSummary(
        run, len(log.records), tally.generated, time.perf_counter() - start, tally.completion_tokens, rss, gpu
    )


def fixed_batches(
    rows_per_cell: Mapping[Any, Callable[[], Iterable[dict]]], batch_size: int, *, order: bool = True
) -> Iterator[tuple[Any, int, list[dict]]]:
    """The fixed partition: per cell (lengths ascending; with `order` false, in the mapping's order),
    instances in question order, `batch_size` at a time.

    `rows_per_cell[cell]()` streams the instances of a cell, so one batch is in memory at a time.
    """
    for num_docs in sorted(rows_per_cell) if order else rows_per_cell:
        batch: list[dict] = []
        index = 0
        for row in rows_per_cell[num_docs]():
            batch.append(row)
            if len(batch) == batch_size:
                yield num_docs, index, batch
                batch, index = [], index + 1
        if batch:
            yield num_docs, index, batch


def write_run_config(run: Path, config: dict[str, Any]) -> None:
    write_json_atomic(run / CONFIG_FILE, config)
