"""What a rollout produces. The trainer consumes exactly these ids and log-probs: it never re-encodes text."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Generation:
    """One sampled completion of one prompt, as the backend produced it."""

    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float]  # sampling-time log-prob of each completion id
    text: str  # decoded completion
    finish_reason: str = "stop"  # "stop" | "length"


@dataclass(slots=True)
class Turn:
    """One call of the agent: a memory update, the final answer, or a recall sample."""

    kind: str  # memory agent: "update" | "answer" | "recall"; search agent: "search" | "answer" | "invalid"
    step: int  # update: chunk index t; answer: number of chunks; recall: k
    generation: Generation


@dataclass(slots=True)
class RecallProbe:
    """Intermediate memory recall for one trajectory: memory_k + chunk l (<k) with one entity as [TARGET]."""

    step: int  # k, the memory written after reading chunk k
    chunk: int  # l < k
    target: str  # the entity replaced by [TARGET]
    label: str
    samples: list[Generation] = field(default_factory=list)  # G2 samples of the one prompt
    predictions: list[str | None] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)  # exact match per sample
    section: str = ""  # the masked chunk l shown in the recall prompt
    target_logprob: float | None = None  # mean log p(target tokens | recall prompt), teacher-forced


@dataclass(slots=True)
class Trajectory:
    """One end-to-end read of an episode (one of the G1 samples of its group)."""

    episode_id: str
    sample: int  # index within the episode's group
    answer: str  # gold
    turns: list[Turn] = field(default_factory=list)  # update turns, then the answer turn
    memories: list[str] = field(default_factory=list)  # memory after each update turn (search agent: state)
    prediction: str | None = None  # last \boxed{} of the answer turn (search agent: the <answer> text)
    em: float = 0.0
    recall: RecallProbe | None = None
    reward: float = 0.0  # R_E = em + λ·mean(recall.rewards) (λ·0 when coupling is off)
    answers: list[str] = field(default_factory=list)  # every gold alias scored against (answer among them)
    num_chunks: int = 0  # chunks read (update turns)
    gold_logprob: float | None = None  # mean log p(gold tokens | answer prompt on the final memory)
    # One record per turn of an agent that acts on an environment (the search agent: turn, kind, query,
    # observation, prompt_tokens); empty for the memory agent.
    actions: list[dict] = field(default_factory=list)
