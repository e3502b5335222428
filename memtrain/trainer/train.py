"""`memtrain train` as a library call: config → checks → episode stream → model → `MemTrainer.train()`.

The config's task (``memtrain.tasks``: masked-entity pretraining, or hotpotqa post-training) says where the
episodes come from and which of their columns the agent reads. Episodes stream from the task's corpus
version's Parquet shards (pyarrow, one shard in memory at a time). The order is a pure function of the seed:
cycle c visits the shards, and the episodes inside each, in an order drawn from ``Random(f"{seed}:{cycle}")``.
TRL's data loader reads that stream, so `--resume` replays the same order.

The model to start from can be an earlier run: a `memtrain train` output folder (its final model) or one of
its complete ``checkpoint-<step>`` folders (`check_start_model`).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from rich.console import Console
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ..config import to_dict
from ..corpus import CorpusVersion, open_corpus
from ..errors import ConfigError, MemtrainError
from ..io import write_json_atomic
from ..outputs import check_writable_output
from ..tasks.base import MASKED_ENTITY, TASKS, Task, get_task
from . import checkpoints, models
from .agent import report_calls
from .config import TrainConfig, _looks_local
from .diagnostics import PLOT, DiagnosticsLog, plot_diagnostics
from .metrics import trajectory_metrics
from .tokenizer_check import TokenizerCheck, check_corpus_tokenizer
from .trainer import CONFIG_FILE, EpisodeReserve, MemTrainer, agent_config
from .types import Trajectory

# --- data ---------------------------------------------------------------------------------------------------


def stream_episodes(
    files: Sequence[str],
    seed: int,
    first_index: int = 0,
    cycles: int | None = None,
    columns: Sequence[str] = TASKS[MASKED_ENTITY].columns,
) -> Iterator[dict]:
    """Episodes with ``index >= first_index``, shard by shard, reshuffled per cycle (endless by default);
    each a dict of `columns` (the task's: what the agent reads; the rest of the row stays on disk)."""
    columns = list(columns)
    for cycle in itertools.count() if cycles is None else range(cycles):
        rng = random.Random(f"{seed}:{cycle}")
        for file in rng.sample(list(files), len(files)):
            table = pq.read_table(file, columns=columns)
            keep = [i for i, index in enumerate(table.column("index").to_pylist()) if index >= first_index]
            rng.shuffle(keep)
            for i in keep:
                yield table.slice(i, 1).to_pylist()[0]


def count_episodes(files: Sequence[Path], first_index: int = 0) -> int:
    return sum(
        sum(
            1
            for index in pq.read_table(f, columns=["index"]).column("index").to_pylist()
            if index >= first_index
        )
        for f in files
    )


def held_out_episodes(corpus: CorpusVersion, n: int, task: Task = TASKS[MASKED_ENTITY]) -> list[dict]:
    """The episodes with ``index < n`` (never trained on), in index order."""
    episodes = [e for e in corpus.iter_episodes(columns=list(task.columns)) if e["index"] < n]
    return sorted(episodes, key=lambda e: e["index"])


def train_dataset(files: Sequence[str], seed: int, first_index: int, task: Task = TASKS[MASKED_ENTITY]):
    """An endless `datasets.IterableDataset` of training episodes in the seeded order of `stream_episodes`."""
    import datasets

    return datasets.IterableDataset.from_generator(
        stream_episodes,
        features=datasets.Features.from_arrow_schema(task.schema()),
        gen_kwargs={
            "files": tuple(files),  # a tuple: one shard
            "seed": seed,
            "first_index": first_index,
            "columns": tuple(task.columns),
        },
    )


def training_corpus(config: TrainConfig) -> CorpusVersion:
    """The task's training corpus version. A task that builds its data (hotpotqa) builds it in one process
    of a multi-process job; the others open what it built."""
    task = get_task(config.task)
    tokenizer = base_model(config.model)
    if not task.builds_corpus or world_size() == 1:
        return task.training_corpus(config, tokenizer)
    import torch.distributed as dist

    # Reading the process index sets up the process group (as the trainer will) before the collective below.
    main = grpo_args(config).process_index == 0
    outcome: list[Any] = [None]
    failure: BaseException | None = None
    if main:
        try:
            outcome = [("ok", str(task.training_corpus(config, tokenizer).path))]
        except Exception as exc:  # the other processes wait for an answer: give them one
            outcome, failure = [("error", str(exc))], exc
    dist.broadcast_object_list(outcome, src=0)
    if failure is not None:
        raise failure
    status, value = outcome[0]
    if status != "ok":
        raise ConfigError(f"corpus: the main process could not prepare the training data: {value}")
    return open_corpus(value)


# --- the model to start from -------------------------------------------------------------------------------


def check_start_model(model: str) -> None:
    """ConfigError unless a local `model` folder holds a whole model to start from. An earlier run's output
    folder (its ``memtrain_config.json`` says so) must hold its final model; a ``checkpoint-<step>`` folder
    must be complete; a LoRA run's adapter alone is not a model."""
    path = Path(model).expanduser()
    if not path.is_dir():
        return
    if checkpoints.checkpoint_step(path) is not None and (path / checkpoints.TRAINER_STATE).exists():
        problem = checkpoints.checkpoint_problem(path)
        if problem is not None:
            raise ConfigError(
                f"model: {path} is an incomplete checkpoint ({problem}); start from a complete one"
            )
    has_config = (path / "config.json").is_file()
    if (path / "adapter_config.json").is_file() and not has_config:
        raise ConfigError(
            f"model: {path} holds a LoRA adapter, not a whole model; merge it into its base model first "
            "(peft: merge_and_unload, then save_pretrained) and start from that folder"
        )
    if (path / CONFIG_FILE).is_file() and not (
        has_config and any((path / name).is_file() for name in checkpoints.WEIGHTS)
    ):
        last = checkpoints.scan(path).last
        hint = f"start from its last complete checkpoint, {last}" if last else "and no complete checkpoint"
        raise ConfigError(
            f"model: {path} is a `memtrain train` output without its final model (the run did not finish); "
            f"{hint}"
        )


def base_model(model: str) -> str:
    """The model an earlier run's output folder or checkpoint was trained from, followed back to the first
    one that is not itself a `memtrain train` output (`model` when it is none). Data built for a tokenizer
    (HotpotQA instances) is named after it, so a run from the instruct model and one from a MemTrain
    checkpoint of it train on the same instances."""
    seen: set[str] = set()
    while model not in seen and (Path(model).expanduser() / CONFIG_FILE).is_file():
        seen.add(model)
        try:
            parent = json.loads((Path(model).expanduser() / CONFIG_FILE).read_text()).get("model")
        except (OSError, ValueError, AttributeError):
            break
        if not isinstance(parent, str) or not parent or (_looks_local(parent) and not Path(parent).exists()):
            break
        model = parent
    return model


# --- configuration ------------------------------------------------------------------------------------------


def world_size() -> int:
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


def check_config(config: TrainConfig) -> CorpusVersion:
    """Everything that can fail before a model is loaded; returns the opened corpus version."""
    return check_training_setup(config)[0]


def check_training_setup(config: TrainConfig) -> tuple[CorpusVersion, TokenizerCheck | None]:
    """`check_config`, and what the corpus tokenizer check found (``tokenizer_check.py``)."""
    corpus = _check_config(config)
    policy = base_model(config.model)
    found = check_corpus_tokenizer(
        corpus, policy, config.corpus_tokenizer, config.chunk_tokens, config.max_chunks
    )
    return corpus, found


def _check_config(config: TrainConfig) -> CorpusVersion:
    config.validate()
    # Before the corpus and the model: a run must not fail at its first save.
    check_writable_output(config.output_dir, kind="dir", what="output_dir")
    world = world_size()
    if config.episodes_per_step % world:
        raise ConfigError(
            f"episodes_per_step ({config.episodes_per_step}) must be divisible by the {world} processes"
        )
    local = config.episodes_per_step // world * config.group_size
    micro_steps = config.updates_per_step * config.gradient_accumulation_steps
    if local % micro_steps:
        raise ConfigError(
            f"each process samples {local} trajectories (episodes_per_step / processes × G1), which must "
            f"be divisible by updates per step × gradient_accumulation_steps ({config.updates_per_step} × "
            f"{config.gradient_accumulation_steps})"
        )
    if config.backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ConfigError("backend vllm needs the vllm package: pip install 'memtrain[gpu]'")
    if config.lora and importlib.util.find_spec("peft") is None:
        raise ConfigError("lora needs the peft package: pip install peft")
    if _looks_local(config.model) or Path(config.model).expanduser().is_dir():
        check_start_model(config.model)
        if Path(config.model).expanduser().resolve() == Path(config.output_dir).expanduser().resolve():
            raise ConfigError(
                f"output_dir: {config.output_dir} is the model's folder; write the new run elsewhere"
            )
    try:
        source = models.resolve(config.model)
        if not source.is_gguf:
            models.check_weights(source.name)
    except MemtrainError as exc:
        raise ConfigError(f"model: {exc}") from None
    # After the cheap checks: a task that builds its data (hotpotqa) does it here.
    try:
        corpus = training_corpus(config)
        files = corpus.episode_files()
    except ConfigError:
        raise
    except MemtrainError as exc:
        raise ConfigError(f"corpus: {exc}") from None
    if not files:
        raise ConfigError(f"corpus: {corpus.path}: has no episode shards")
    if count_episodes(files, config.held_out_episodes) == 0:
        raise ConfigError(
            f"corpus: {corpus.path}: no episode left to train on after holding out {config.held_out_episodes}"
        )
    return corpus


def resolve_dtype(name: str) -> str:
    import torch

    if name != "auto":
        return name
    return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"


def grpo_args(config: TrainConfig) -> Any:
    """The `trl.GRPOConfig` that makes TRL's loop run MemTrain's step (see `MemTrainer`)."""
    import torch
    from trl import GRPOConfig

    cuda = torch.cuda.is_available()
    kwargs = config.trl_kwargs(world_size(), resolve_dtype(config.dtype), cpu=not cuda)
    kwargs.update(config.trl_args)
    try:
        return GRPOConfig(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"trl: {exc}") from None


def lora_config(config: TrainConfig) -> Any:
    if not config.lora:
        return None
    from peft import LoraConfig

    targets = config.lora_target_modules
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear" if targets == ["all-linear"] else targets,
        task_type="CAUSAL_LM",
    )


# --- evaluation ---------------------------------------------------------------------------------------------


@dataclass
class EvalResult:
    """One held-out evaluation: the step it was made at and ``metrics.trajectory_metrics`` of it."""

    step: int
    metrics: dict[str, float]

    @property
    def e2e_reward(self) -> float:
        return self.metrics.get("reward", 0.0)

    @property
    def em(self) -> float:
        return self.metrics.get("em", 0.0)

    @property
    def recall_em(self) -> float | None:
        return self.metrics.get("recall_em")

    @property
    def trajectories(self) -> int:
        return int(self.metrics.get("trajectories", 0))


def evaluate(
    trainer: MemTrainer, episodes: list[dict], seed: int = 0, label: str = "held-out", step: int = 0
) -> EvalResult:
    """Held-out figures of the current policy with evaluation sampling (§8): E2E EM and reward, recall EM
    (by distance), boxed share, memory length and the gold log-likelihood (``trajectory_metrics``)."""
    from accelerate.utils import gather_object

    config = agent_config(trainer.memtrain_config, evaluation=True)
    rank, world = trainer.accelerator.process_index, trainer.accelerator.num_processes
    mine = episodes[rank::world]
    with trainer.generation_backend() as backend:  # every process enters: generation may be collective
        label = f"{label} evaluation, {len(episodes) * config.group_size} trajectories: "
        on_call = report_calls(trainer.status, label)
        trajectories: list[Trajectory] = (
            trainer.task.rollout(mine, backend, config, seed=seed, on_call=on_call) if mine else []
        )
    if world > 1:
        trajectories = gather_object(trajectories)
    return EvalResult(step, trajectory_metrics(trajectories))


class HeldOutEvaluation(TrainerCallback):
    """Evaluates the held-out episodes every `every` memtrain steps during training (and, through
    :meth:`run`, before and after it): each result goes to `diagnostics.jsonl`, to the trainer's loggers
    (TensorBoard: ``eval/<metric>``, from the ``eval_<metric>`` keys) and to `results`."""

    def __init__(self, trainer: MemTrainer, episodes: list[dict], every: int, log: DiagnosticsLog | None):
        self.trainer = trainer
        self.episodes = episodes
        self.every = every
        self.log = log
        self.updates = trainer.updates_per_step
        self.results: list[EvalResult] = []

    def run(self, step: int, label: str) -> EvalResult:
        trainer = self.trainer
        result = evaluate(trainer, self.episodes, trainer.memtrain_config.seed, label, step)
        self.results.append(result)
        if self.log is not None:  # only the main process has one
            self.log.append(step, result.metrics)
        # transformers' own log (TRL's would also flush the training metrics of the step in progress)
        logs = {f"eval_{key}": value for key, value in result.metrics.items()}
        Trainer.log(trainer, logs)
        return result

    def on_step_end(self, args, state, control, **kwargs):
        step, update = divmod(state.global_step, self.updates)
        if self.every and not update and step % self.every == 0 and step < state.max_steps // self.updates:
            self.run(step, f"step {step}")


# --- the entry point ----------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    seconds_per_step: float
    eval_before: EvalResult | None = None
    eval_after: EvalResult | None = None
    log_history: list[dict] = field(default_factory=list)
    resumed_from: Path | None = None  # the checkpoint `--resume` continued from
    set_aside: list[Path] = field(default_factory=list)  # incomplete checkpoints renamed incomplete-…
    evaluations: list[EvalResult] = field(default_factory=list)  # every held-out evaluation of this run
    diagnostics_plot: Path | None = None  # output_dir/diagnostics.png (from diagnostics.jsonl)


def build_trainer(
    config: TrainConfig, corpus: CorpusVersion, console: Console | None = None, **trainer_kwargs
):
    """Load the tokenizer and model and wire the episode stream into a `MemTrainer` (no training yet)."""
    args = grpo_args(config)
    model_path = models.materialize(config.model)
    tokenizer = models.load_tokenizer(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    task = get_task(config.task)
    files = [str(f) for f in corpus.episode_files()]
    dataset = train_dataset(files, config.seed, config.held_out_episodes, task)
    rank, world = args.process_index, args.world_size
    reserve = EpisodeReserve(
        lambda: itertools.islice(
            stream_episodes(files, config.seed + 1, config.held_out_episodes, columns=task.columns),
            rank,
            None,
            world,
        )
    )
    trainer = MemTrainer(
        model=model_path,
        args=args,
        config=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        reserve=reserve,
        peft_config=lora_config(config),
        **trainer_kwargs,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if console is not None:
        from ..train_console import ConsoleProgress  # what `memtrain train` draws, beside the CLI

        progress = ConsoleProgress(console, config.updates_per_step)
        trainer.add_callback(progress)
        if args.process_index == 0:
            trainer.status = progress.status
    return trainer


def _is_main_process() -> bool:
    """Process 0 of a `torch.distributed.run` / `accelerate launch` job (or the only process); known from the
    launcher's environment, before any process group exists."""
    import os

    return os.environ.get("RANK", "0") in ("", "0")


def choose_checkpoint(
    output_dir: Path, resume: bool, console: Console | None = None
) -> tuple[Path | None, list[Path]]:
    """The checkpoint to resume from (None: a fresh run) and the incomplete checkpoints renamed aside.

    Incomplete ``checkpoint-<step>`` folders (a save killed by an older memtrain, a truncated file) are
    never resumed from: they are renamed ``incomplete-checkpoint-<step>``, and what memtrain's own staging
    folder holds of an unfinished save is removed. Only the main process renames; every process computes the
    same choice, since complete checkpoints are never touched.
    """
    found = checkpoints.scan(output_dir)
    if not resume and found.complete:
        raise ConfigError(
            f"{output_dir} already has checkpoints ({found.last.name} is the last); pass --resume, or choose "
            "another output_dir"
        )
    if resume and not found.complete:
        if found.incomplete:
            bad = "; ".join(f"{folder.name}: {problem}" for folder, problem in found.incomplete)
            raise ConfigError(f"--resume: {output_dir} has no complete checkpoint to resume from ({bad})")
        raise ConfigError(f"--resume: {output_dir} has no checkpoint-<step> folder to resume from")
    main = _is_main_process()
    say = console.print if console is not None and main else (lambda *a, **k: None)
    moved: list[Path] = []
    for folder, problem in found.incomplete:
        if main:
            moved.append(checkpoints.set_aside(folder))
            say(
                f"[yellow]⚠ {folder.name} is incomplete ({problem}): not resumed from; renamed "
                f"{moved[-1].name}[/]",
                highlight=False,
                soft_wrap=True,
            )
    if found.unfinished_saves and main:
        checkpoints.remove_staging(output_dir)
        say(
            f"[yellow]⚠ removed the unfinished save of {', '.join(found.unfinished_saves)} (the run stopped "
            f"while saving it)[/]",
            highlight=False,
            soft_wrap=True,
        )
    last = found.last if resume else None
    if last is not None:
        step = checkpoints.checkpoint_step(last)
        say(f"resuming from {last.name} (step {step})", highlight=False, soft_wrap=True)
    return last, moved


def recount_line(found: TokenizerCheck) -> str:
    line = (
        f"⚠ the corpus was sized with the {found.corpus_tokenizer} tokenizer, not the policy's "
        f"({found.policy_tokenizer})"
    )
    if found.tokens and found.chunks:
        line += (
            f"; in the policy's tokens {found.sampled} of its episodes have {found.tokens[0]:,}–"
            f"{found.tokens[2]:,} tokens (median {found.tokens[1]:,}), {found.chunks[0]}–{found.chunks[2]} "
            "chunks each"
        )
    return line


def save_final_model(trainer: MemTrainer, output_dir: Path) -> None:
    """`trainer.save_model(output_dir)`, written under a temporary name first: each file of the final model
    appears whole or not at all (every process takes part, as saving may gather weights)."""
    import os
    import shutil

    staging = output_dir / checkpoints.STAGING / "final"
    if trainer.args.should_save and staging.exists():
        shutil.rmtree(staging)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(staging), _internal_call=True)
    trainer.accelerator.wait_for_everyone()
    if trainer.args.should_save:
        # Weights first, the files that point at them (index, config) last.
        entries = sorted(staging.iterdir(), key=lambda p: (p.suffix == ".json", p.name))
        for entry in entries:
            target = output_dir / entry.name
            if entry.is_dir() and target.is_dir():  # a DeepSpeed global_step folder of an earlier save
                old = output_dir / checkpoints.STAGING / f"old-{entry.name}"
                os.replace(target, old)
                os.replace(entry, target)
                shutil.rmtree(old)
            else:
                os.replace(entry, target)
        checkpoints.remove_staging(output_dir, "final")
    trainer.accelerator.wait_for_everyone()
    if trainer.args.push_to_hub:
        trainer.push_to_hub(commit_message="Model save", revision=trainer.args.hub_revision)


def train(
    config: TrainConfig,
    resume: bool = False,
    console: Console | None = None,
    reward_fn: Callable[[Trajectory], float] | None = None,
) -> TrainResult:
    """Train as `config` says; with `resume`, continue from the last complete checkpoint in ``output_dir``.

    `reward_fn` replaces the end-to-end reward R_E of each trajectory (a custom task); by default it is Eq. 2.
    """
    corpus, tokenizers = check_training_setup(config)
    output_dir = Path(config.output_dir)
    if tokenizers is not None and not tokenizers.same and console is not None and _is_main_process():
        console.print(recount_line(tokenizers), style="yellow", highlight=False, soft_wrap=True)
    last, moved = choose_checkpoint(output_dir, resume, console)
    task = get_task(config.task)
    held_out = held_out_episodes(corpus, config.eval_episodes, task) if config.eval_episodes else []

    trainer = build_trainer(config, corpus, console, reward_fn=reward_fn)
    write_json_atomic(output_dir / CONFIG_FILE, {**to_dict(config), "corpus_path": str(corpus.path)})
    updates = config.updates_per_step
    start_step = (checkpoints.checkpoint_step(last) or 0) // updates if last is not None else 0
    main = trainer.accelerator.is_main_process
    log = DiagnosticsLog(output_dir) if main else None
    if log is not None:
        log.keep_until(start_step if last is not None else -1)  # a fresh run starts a fresh file
    evaluation = HeldOutEvaluation(trainer, held_out, config.eval_steps, log) if held_out else None
    if evaluation is not None:
        trainer.add_callback(evaluation)
    try:
        before = evaluation.run(0, "step 0") if evaluation is not None and not resume else None
        start = time.perf_counter()
        trainer.train(resume_from_checkpoint=str(last) if last is not None else None)
        seconds = time.perf_counter() - start
        save_final_model(trainer, output_dir)
        steps = trainer.state.global_step // updates
        after = evaluation.run(steps, "final") if evaluation is not None else None
    finally:
        for callback in trainer.callback_handler.callbacks:
            if callable(getattr(callback, "stop", None)):  # a live status line (train_console)
                callback.stop()
    records = log.read() if log is not None else []
    plot = None
    if records:
        plot = plot_diagnostics(records, output_dir / PLOT, title=f"{output_dir.name}: held-out diagnostics")
    return TrainResult(
        output_dir=output_dir,
        steps=steps,
        seconds_per_step=seconds / max(1, steps - start_step),
        eval_before=before,
        eval_after=after,
        log_history=list(trainer.state.log_history),
        resumed_from=last,
        set_aside=moved,
        evaluations=evaluation.results if evaluation is not None else [],
        diagnostics_plot=plot,
    )
