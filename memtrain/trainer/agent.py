"""The memory agent and its batched rollout loop (docs/method.md §1, §3, §4).

Read top to bottom, :func:`rollout` is the whole algorithm:

1. chunk each episode's document with the model's tokenizer (``chunk_tokens`` per chunk);
2. every episode gets ``group_size`` trajectories, each starting from the memory "No previous memory";
3. at each step every unfinished trajectory of every episode makes its next call, all in **one** backend call:
   an *update* turn ``(problem, memory_{t-1}, chunk_t) → memory_t`` while chunks remain (the whole response
   overwrites the memory, cut to ``memory_tokens``), else the final *answer* turn ``(problem, memory) →
   \\boxed{}``;
4. each finished trajectory gets one recall probe (memory_k, chunk l < k with an entity as ``[TARGET]``), and
   all probes × ``recall_samples`` go to the backend in one more call;
5. optionally (``score_gold``, or a dense reward weight), the teacher-forced log-likelihood of the gold
   answer after the answer prompt on the final memory, and of each recall target after its recall prompt;
6. rewards (:func:`score_trajectory`): ``em``, the final answer under ``answer_metric`` (exact match by
   default), EM per recall sample, ``R_E = em + λ·mean(recall EMs)`` (plus the dense terms when weighted).

Every call keeps its prompt ids, sampled completion ids and their log-probs
(:class:`~memtrain.trainer.types.Turn`), so training never re-encodes decoded text. All randomness comes from
``seed``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..config import RenamedKeywords
from ..errors import ConfigError, MemtrainError
from ..tasks.base import MASKED_ENTITY, TASKS, Task, episode_name, gold_answers, row_problem
from . import prompts, rewards
from .backends import GenerationBackend, SamplingParams, score_completions
from .chunking import Chunk, PromptBuilder, chunk_document, memory_from_completion
from .recall import choose_probe, entities_by_chunk
from .types import Generation, RecallProbe, Trajectory, Turn

PAPER_CALL_TOKENS = 8192

# Named budget presets: the paper's 8192-token call (the defaults), and a small one for CPU demos and tests.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "tiny": {"problem_tokens": 256, "chunk_tokens": 512, "memory_tokens": 128, "response_tokens": 128},
}
# Sampling settings (docs/method.md §8): MemAgent's training values (the defaults) and evaluation values (the
# memory-agent tasks' held-out sampling, `Task.eval_sampling`).
SAMPLING: dict[str, dict[str, float]] = {
    "train": {},
    "eval": dict(zip(("temperature", "top_p"), Task.eval_sampling, strict=True)),
}


@dataclass
class AgentSettings(metaclass=RenamedKeywords):
    """The memory agent's settings that training sets too: budgets, group sizes, rewards and sampling.

    Each is defined here once, with its default (the paper's), help and bounds; :class:`AgentConfig` (a
    rollout) and :class:`~memtrain.trainer.config.TrainConfig` (a training run) both inherit them, and
    ``trainer.config.agent_config`` copies them across. Construction refuses a value no agent can use;
    what training needs beyond that (G1 ≥ 2, …) is ``TrainConfig.validate``'s.
    """

    # Deprecated names, old → new: still read (YAML, -o, keywords, attributes) with a FutureWarning.
    RENAMED: ClassVar[dict[str, str]] = {"recall_group_size": "recall_samples"}

    problem_tokens: int = field(
        default=1024, metadata={"help": "Tokens for the chat template, instructions and problem of a call."}
    )
    chunk_tokens: int = field(
        default=5120, metadata={"help": "Document tokens per chunk (one update turn each)."}
    )
    memory_tokens: int = field(
        default=1024, metadata={"help": "Memory budget: a memory longer than this many tokens is cut."}
    )
    response_tokens: int = field(
        default=1024, metadata={"help": "Most tokens generated per call (max_new_tokens)."}
    )
    group_size: int = field(
        default=8, metadata={"help": "G1: end-to-end trajectories per episode; the E2E advantage group."}
    )
    recall: bool | None = field(
        default=None,
        metadata={
            "help": "Run (and train) the intermediate-memory-recall probe (off: the End-to-End ablation; "
            "unset: on when the task's episodes have entity spans, i.e. masked-entity, the default; off for "
            "hotpotqa)."
        },
    )
    recall_samples: int = field(
        default=8,
        metadata={
            "help": "G2: samples of each trajectory's one recall prompt; the recall group (formerly "
            "recall_group_size)."
        },
    )
    coupling: bool = field(
        default=True,
        metadata={"help": "Add λ·mean(recall EM) to the E2E reward (off: the Decoupled ablation, R_E = EM)."},
    )
    recall_weight: float = field(default=0.5, metadata={"help": "λ in R_E = EM + λ·mean(recall EM) (Eq. 2)."})
    answer_metric: str | None = field(
        default=None,
        metadata={
            "help": "Score of the final \\boxed{} answer, which is the E2E reward: em, sub_em, contains or "
            "f1 (unset: the task's, em; recall samples are always scored with em)."
        },
    )
    temperature: float = field(
        default=1.0, metadata={"help": "Sampling temperature (0: greedy; MemAgent's training value)."}
    )
    top_p: float = field(
        default=1.0, metadata={"help": "Nucleus sampling threshold (MemAgent's training value)."}
    )
    max_chunks: int | None = field(
        default=None,
        metadata={"help": "Read at most this many chunks of an episode (unset: every chunk, the paper)."},
    )
    dense_weight: float = field(
        default=0.0,
        metadata={
            "help": "Dense memory reward, an extension for small models (0: off, the paper): add "
            "w · log p(gold answer | final memory) to R_E, teacher-forced through the answer prompt (mean "
            "per answer token). Groups then differ even when no sample is exactly right. Needs the "
            "transformers backend."
        },
    )
    dense_recall_weight: float = field(
        default=0.0,
        metadata={
            "help": "Add w · log p(recall target | memory_k) to R_E, teacher-forced through the recall "
            "prompt (0: off). Needs recall and the transformers backend."
        },
    )

    def __post_init__(self) -> None:
        # Unset task-dependent settings take the task's value, so everything after construction reads a bool
        # and a metric name.
        task = self._task()
        if self.recall is None:
            self.recall = task.recall
        if self.answer_metric is None:
            self.answer_metric = task.answer_metric
        self._check_settings()

    def _task(self) -> Task:
        """The task whose defaults an unset `recall` and `answer_metric` take: MemTrain's masked-entity task,
        whose problem is the agent's default (TrainConfig: its `task`)."""
        return TASKS[MASKED_ENTITY]

    def _check_settings(self) -> None:
        """ConfigError for a setting that cannot work, each field's own bounds (run at construction)."""
        for name in ("problem_tokens", "chunk_tokens", "memory_tokens", "response_tokens", "group_size",
                     "recall_samples"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ConfigError(
                f"need temperature >= 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}"
            )
        if self.max_chunks is not None and self.max_chunks < 1:
            raise ConfigError(f"max_chunks must be at least 1 (or unset), got {self.max_chunks}")
        if self.answer_metric not in rewards.METRICS:
            raise ConfigError(
                f"answer_metric must be one of {', '.join(rewards.METRICS)}, got {self.answer_metric!r}"
            )
        if self.recall_weight < 0.0:
            raise ConfigError(f"recall_weight (λ) must be non-negative, got {self.recall_weight}")
        if self.dense_weight < 0 or self.dense_recall_weight < 0:
            raise ConfigError(
                "dense_weight and dense_recall_weight must be non-negative, got "
                f"{self.dense_weight}, {self.dense_recall_weight}"
            )


@dataclass
class AgentConfig(AgentSettings):
    """One rollout's settings: :class:`AgentSettings` (budgets, groups, rewards, sampling; the paper's
    defaults), and what a rollout alone sets: the problem, the first memory, the seed, gold scoring."""

    problem: str = field(
        default=prompts.MEMTRAIN_PROBLEM,
        metadata={"help": "Problem text of update/answer prompts; an episode's own 'problem' field wins."},
    )
    initial_memory: str = field(
        default=prompts.INITIAL_MEMORY, metadata={"help": "Memory before the first turn."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of sampling and of recall-probe choices."})
    score_gold: bool = field(
        default=False,
        metadata={
            "help": "Also score, teacher-forced, log p(gold answer | final memory) and, with the recall "
            "probe, log p(target | memory_k): a diagnostic that moves before EM does (no sampling)."
        },
    )

    @property
    def call_tokens(self) -> int:
        """The most tokens one call may hold, prompt plus response (8192 in the paper)."""
        return self.problem_tokens + self.chunk_tokens + self.memory_tokens + self.response_tokens

    @classmethod
    def preset(cls, name: str = "paper", sampling: str = "train", **overrides: Any) -> AgentConfig:
        """A named budget preset ("paper", "tiny") with "train" or "eval" sampling, then `overrides`."""
        if name not in PRESETS:
            raise ConfigError(f"unknown agent preset {name!r}; known: {', '.join(PRESETS)}")
        if sampling not in SAMPLING:
            raise ConfigError(f"unknown sampling {sampling!r}; known: {', '.join(SAMPLING)}")
        return cls(**{**PRESETS[name], **SAMPLING[sampling], **overrides})

    def sampling_params(self, seed: int | None = None) -> SamplingParams:
        return SamplingParams(self.response_tokens, self.temperature, self.top_p, seed)


@dataclass
class PreparedEpisode:
    """An episode as the agent reads it: document, chunks under the agent's tokenizer, gold, problem."""

    episode_id: str
    text: str
    chunks: list[Chunk]
    answers: list[str]
    problem: str
    entities_per_chunk: list[dict[str, str]]

    def chunk_text(self, t: int) -> str:
        return self.text[self.chunks[t].start : self.chunks[t].end]


@dataclass(frozen=True, slots=True)
class CallStats:
    """One backend call of a rollout, for progress bars and throughput."""

    phase: str  # "turn" | "recall"
    step: int
    prompts: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float


def report_calls(report: Callable[[str], None] | None, label: str = "") -> Callable[[CallStats], None] | None:
    """An `on_call` for :func:`rollout` that passes `report` a line such as "turn 2: 16 prompts · 85 tok/s"
    (after `label`) after every backend call; tokens/s counts generated tokens over the calls so far."""
    if report is None:
        return None
    generated, seconds = 0, 0.0

    def on_call(stats: CallStats) -> None:
        nonlocal generated, seconds
        generated += stats.completion_tokens
        seconds += stats.seconds
        rate = generated / max(seconds, 1e-9)
        report(f"{label}{stats.phase} {stats.step}: {stats.prompts} prompts · {rate:.1f} tok/s")

    return on_call


def prepare_episode(episode: Mapping[str, Any], tokenizer: Any, config: AgentConfig) -> PreparedEpisode:
    """Chunk an episode record (corpus schema, or any mapping with ``text`` and ``answer``/``answers``)."""
    episode_id = episode_name(episode)
    text = episode.get("text")
    if not isinstance(text, str):
        raise MemtrainError(f"episode {episode_id}: needs a string field 'text' (the document)")
    answers = gold_answers(episode)
    chunks = chunk_document(text, tokenizer, config.chunk_tokens)
    if config.max_chunks:
        chunks = chunks[: config.max_chunks]
    return PreparedEpisode(
        episode_id=episode_id,
        text=text,
        chunks=chunks,
        answers=answers,
        problem=row_problem(episode, config.problem),
        entities_per_chunk=entities_by_chunk(text, chunks, episode.get("entities") or []),
    )


def call_seed(seed: int, call: int) -> int:
    """The sampling seed of a rollout's `call`-th backend call (every agent derives its calls' seeds so)."""
    return (seed * 1_000_003 + call * 7_919) % (2**31)


def reported_generate(
    backend: GenerationBackend,
    prompt_ids: list[list[int]],
    params: SamplingParams,
    phase: str,
    step: int,
    on_call: Callable[[CallStats], None] | None = None,
) -> list[Generation]:
    """One backend call, timed and reported to `on_call` as its :class:`CallStats`."""
    start = time.perf_counter()
    generations = backend.generate(prompt_ids, params)
    if on_call is not None:
        prompt_tokens = sum(len(p) for p in prompt_ids)
        completion_tokens = sum(len(g.completion_ids) for g in generations)
        seconds = time.perf_counter() - start
        on_call(CallStats(phase, step, len(prompt_ids), prompt_tokens, completion_tokens, seconds))
    return generations


def rollout(
    episodes: Sequence[Mapping[str, Any]],
    backend: GenerationBackend,
    config: AgentConfig,
    *,
    seed: int | None = None,
    templates: dict[str, str] | None = None,
    on_call: Callable[[CallStats], None] | None = None,
) -> list[Trajectory]:
    """Run ``config.group_size`` trajectories per episode; return them episode-major (episode e, sample g at
    ``e * group_size + g``), with turns, memories, prediction, EM, recall probe and reward filled in.

    `seed` defaults to ``config.seed``; `templates` overrides named prompt templates (see
    ``prompts.TEMPLATES``); `on_call` is called after every backend call with its :class:`CallStats`.
    """
    seed = config.seed if seed is None else seed
    tokenizer = backend.tokenizer
    builder = PromptBuilder(tokenizer, config, templates)
    prepared = [prepare_episode(ep, tokenizer, config) for ep in episodes]
    for ep in prepared:
        builder.check_problem(ep.problem)
    owners = [ep for ep in prepared for _ in range(config.group_size)]
    trajectories = [
        Trajectory(
            episode_id=ep.episode_id,
            sample=g,
            answer=ep.answers[0],
            answers=ep.answers,
            num_chunks=len(ep.chunks),
        )
        for ep in prepared
        for g in range(config.group_size)
    ]
    memory = [config.initial_memory] * len(trajectories)

    def call(phase: str, step: int, prompt_ids: list[list[int]]):
        params = config.sampling_params(call_seed(seed, step))
        return reported_generate(backend, prompt_ids, params, phase, step, on_call)

    # Steps 1-3: update turns while chunks remain, then the answer turn; all active trajectories in one call.
    active = list(range(len(trajectories)))
    step = 0
    while active:
        calls = []
        for i in active:
            ep, t = owners[i], len(trajectories[i].memories)
            if t < len(ep.chunks):
                calls.append(("update", t, builder.update(ep.problem, memory[i], ep.chunk_text(t))))
            else:
                calls.append(("answer", t, builder.answer(ep.problem, memory[i])))
        generations = call("turn", step, [ids for _, _, ids in calls])
        still_active = []
        for i, (kind, t, _), generation in zip(active, calls, generations, strict=True):
            trajectory = trajectories[i]
            trajectory.turns.append(Turn(kind, t, generation))
            if kind == "update":
                memory[i] = memory_from_completion(generation.completion_ids, tokenizer, config.memory_tokens)
                trajectory.memories.append(memory[i])
                still_active.append(i)
        active = still_active
        step += 1

    # Step 4: one recall probe per trajectory (when the document offers one), G2 samples each, in one call.
    if config.recall:
        probed: list[Trajectory] = []
        probe_prompts: list[list[int]] = []
        for trajectory, ep in zip(trajectories, owners, strict=False):
            rng = random.Random(f"{seed}:{ep.episode_id}:{trajectory.sample}")
            spec = choose_probe(ep.text, ep.chunks, [], rng, per_chunk=ep.entities_per_chunk)
            if spec is None:
                continue
            trajectory.recall = RecallProbe(
                spec.step, spec.chunk, spec.target, spec.label, section=spec.section
            )
            probed.append(trajectory)
            probe_prompts.append(builder.recall(trajectory.memories[spec.step], spec.section))
        if probed:
            n = config.recall_samples
            generations = call("recall", step, [ids for ids in probe_prompts for _ in range(n)])
            for j, trajectory in enumerate(probed):
                trajectory.recall.samples = generations[j * n : (j + 1) * n]

    # Step 4b (optional): teacher-forced log-likelihood of the gold answer given the final memory, and of
    # the recall target given memory_k; no sampling.
    if config.score_gold or config.dense_weight or config.dense_recall_weight:
        score_gold_answers(trajectories, owners, builder, backend, memory)

    # Step 5: rewards.
    for trajectory in trajectories:
        score_trajectory(trajectory, config)
    return trajectories


def answer_ids(tokenizer: Any, answer: str) -> list[int]:
    """The ids that are scored of an answer written as the answer turn writes it, ``\\boxed{answer}``: the
    answer and its closing brace (the ``\\boxed{`` before them is the format, given, not scored)."""
    return tokenizer.encode(f"{answer}}}", add_special_tokens=False)


def score_gold_answers(
    trajectories: Sequence[Trajectory],
    owners: Sequence[PreparedEpisode],
    builder: PromptBuilder,
    backend: GenerationBackend,
    final_memories: Sequence[str],
) -> None:
    """Fill ``gold_logprob`` (best gold alias, mean log-prob per answer token after the answer prompt on the
    final memory) and each probe's ``target_logprob`` (after its recall prompt), in one scoring call."""
    tokenizer = backend.tokenizer
    prefix = tokenizer.encode("\\boxed{", add_special_tokens=False)
    prompts_, completions, owners_of = [], [], []  # owners_of: (trajectory index, "gold" | "target")
    for i, (trajectory, ep) in enumerate(zip(trajectories, owners, strict=True)):
        prompt = builder.answer(ep.problem, final_memories[i])
        for answer in trajectory.answers or [trajectory.answer]:
            prompts_.append(prompt)
            completions.append(prefix + answer_ids(tokenizer, answer))
            owners_of.append((i, "gold"))
        probe = trajectory.recall
        if probe is not None:
            prompts_.append(builder.recall(trajectory.memories[probe.step], probe.section))
            completions.append(prefix + answer_ids(tokenizer, probe.target))
            owners_of.append((i, "target"))
    if not prompts_:
        return
    for (i, kind), logprobs in zip(owners_of, score_completions(backend, prompts_, completions), strict=True):
        scored = logprobs[len(prefix) :]
        value = sum(scored) / max(1, len(scored))
        trajectory = trajectories[i]
        if kind == "target":
            trajectory.recall.target_logprob = value
        elif trajectory.gold_logprob is None or value > trajectory.gold_logprob:
            trajectory.gold_logprob = value


def score_trajectory(trajectory: Trajectory, config: AgentConfig) -> Trajectory:
    """Step 5 of :func:`rollout`, on a trajectory whose calls are done: the prediction (last ``\\boxed{}`` of
    the answer turn) scored with ``config.answer_metric`` against the gold answers (``em``), each recall
    sample's EM with its target, and ``R_E = em + λ·mean(recall EMs)`` (Eq. 2; ``em`` alone when not coupled).
    """
    last = trajectory.turns[-1] if trajectory.turns else None
    answer = last.generation.text if last is not None and last.kind == "answer" else None
    trajectory.prediction = rewards.extract_boxed(answer)
    gold = trajectory.answers or [trajectory.answer]
    trajectory.em = rewards.METRICS[config.answer_metric](trajectory.prediction, gold)
    probe = trajectory.recall
    if probe is not None:
        probe.predictions = [rewards.extract_boxed(g.text) for g in probe.samples]
        probe.rewards = [rewards.exact_match(p, probe.target) for p in probe.predictions]
    trajectory.reward = rewards.e2e_reward(
        trajectory.em, probe.rewards if probe else [], config.recall_weight, config.coupling and config.recall
    ) + rewards.dense_reward(
        trajectory.gold_logprob,
        probe.target_logprob if probe is not None else None,
        config.dense_weight,
        config.dense_recall_weight,
    )
    return trajectory
