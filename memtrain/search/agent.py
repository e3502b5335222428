"""MEM1's constant-memory search agent (arXiv 2506.15841) and its batched rollout loop.

The agent answers an episode's questions (``memtrain.search.qa.compose``: one or more questions joined by
"; ") by searching a passage index, one search per turn. Each response is the agent's internal state in
``<think>…</think>`` followed by exactly one action, ``<search>query</search>`` or
``<answer>a1; a2</answer>``.

Read top to bottom, :func:`rollout` is the whole algorithm:

1. every episode gets ``group_size`` trajectories; each turn's prompt is the chat-templated instruction and
   questions, then (in the assistant's reply, as MEM1 and Search-R1 lay it out) the trajectory's history and
   how many turns are left. With ``history="constant"`` (MEM1) the history is only the previous turn: its
   state and action and the observation that answered it, so the context stays bounded whatever the number
   of turns; with ``history="full"`` (the comparison) every earlier turn stays;
2. at each turn every unfinished trajectory of every episode makes its next call, all in **one** backend call;
3. each response is parsed (:func:`parse_response`): the state, then the first action after it; the
   generation is cut after that action's closing tag (:func:`stop_after_action`, what MEM1's stop strings
   do), so what is trained is what the next turn reads;
4. all search queries of the turn go to the retriever in **one** ``search`` call; each observation is the top
   ``topk`` passages ("Doc 1 (Title: …) text"), cut to ``observation_tokens``; a response without a valid
   action is told the valid formats instead (it still counts as a turn);
5. a trajectory ends when it answers or after ``max_turns`` turns; its score (:func:`score_trajectory`) is
   the episode's exact match averaged over its questions (``qa.episode_score``), which is also its reward.

Every call keeps its prompt ids, sampled completion ids and their log-probs
(:class:`~memtrain.trainer.types.Turn`), so each turn is one training sequence. All randomness comes from
``seed``; one episode at a time is simply ``rollout([episode], …)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, MemtrainError
from ..trainer.agent import CallStats, call_seed, reported_generate
from ..trainer.backends import GenerationBackend, SamplingParams
from ..trainer.chunking import chat_prompt_ids, chunk_document, encode, shortest_prefix
from ..trainer.types import Generation, Trajectory, Turn
from .qa import episode_score, split_answers
from .retriever import Hit, SearchBackend

HISTORIES = ("constant", "full")
STOP_STRINGS = ("</search>", "</answer>")  # a turn's response ends with its action
_COUNTS = ("max_turns", "prompt_tokens", "response_tokens", "observation_tokens", "topk", "group_size")
# Sampling settings: MEM1's training (T = 1, top_p = 1) and evaluation (greedy) values.
SAMPLING: dict[str, dict[str, float]] = {
    "train": {"temperature": 1.0, "top_p": 1.0},
    "eval": {"temperature": 0.0, "top_p": 0.95},
}

# --- prompts (one home): the instruction is the user message; the rest is the start of the reply -----------

INSTRUCTION_TEMPLATE = (
    "Answer {questions} by searching Wikipedia, one search per turn, in at most {turns}. "
    "{history}\n"
    "Begin every turn with your internal state between <think> and </think>: everything you need to keep, "
    "what you have found so far and what you still have to find. Then take exactly one action:\n"
    "- <search>query</search> to search; the top passages come back between <information> and "
    "</information>, followed by the number of turns you have left;\n"
    "- <answer>{example}</answer> once you know every answer: one short answer per question, in the order "
    'of the questions, separated by ";".\n'
    "{label}: {problem}"
)
HISTORY_NOTES: dict[str, str] = {
    "constant": "Each turn you see only this message, your previous turn and its search results: older "
    "turns are erased, so your state must carry everything you still need.",
    "full": "Each turn you see this message and all your earlier turns with their search results.",
}
OBSERVATION_OPEN = "\n\n<information>\n"
OBSERVATION_CLOSE = "\n</information>\n\n"
DOCUMENT_TEMPLATE = "Doc {n} (Title: {title}) {text}"
NO_RESULTS = "No passage matches this query."
INVALID_OBSERVATION = (
    "No valid action. Write your state between <think> and </think>, then either <search>query</search> or "
    '<answer>…</answer> with one answer per question, separated by ";".'
)
TURNS_LEFT = "[{left} turns left]\n"
LAST_TURN = "[Last turn: give your answer now]\n"

_STATE = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_ACTION = re.compile(r"<(search|answer)>(.*?)</\1>", re.DOTALL)


@dataclass
class SearchAgentConfig:
    """Turns, token limits, retrieval depth, history and sampling of the search agent. Defaults are MEM1's,
    with its evaluation sampling (greedy); :meth:`with_sampling` gives its training sampling."""

    max_turns: int = field(default=6, metadata={"help": "Turns per trajectory; unanswered after: score 0."})
    prompt_tokens: int = field(
        default=2048,
        metadata={"help": "Tokens for the chat template, instructions and questions of a call."},
    )
    response_tokens: int = field(
        default=1000, metadata={"help": "Max new tokens of every call (max_new_tokens)."}
    )
    observation_tokens: int = field(
        default=1000, metadata={"help": "Search results (or a format reminder) longer than this are cut."}
    )
    topk: int = field(default=3, metadata={"help": "Passages retrieved per search."})
    group_size: int = field(default=1, metadata={"help": "Trajectories per episode."})
    history: str = field(
        default="constant",
        metadata={"help": "constant: only the previous turn stays in the prompt (MEM1); full: every turn."},
    )
    temperature: float = field(default=0.0, metadata={"help": "Sampling temperature (0: greedy)."})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling threshold."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling."})

    def __post_init__(self) -> None:
        for name in _COUNTS:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.history not in HISTORIES:
            raise ConfigError(f"history must be one of {', '.join(HISTORIES)}, got {self.history!r}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ConfigError(
                f"need temperature >= 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}"
            )

    @classmethod
    def with_sampling(cls, sampling: str = "train", **overrides: Any) -> SearchAgentConfig:
        """The defaults with "train" or "eval" sampling (:data:`SAMPLING`), then `overrides`."""
        if sampling not in SAMPLING:
            raise ConfigError(f"unknown sampling {sampling!r}; known: {', '.join(SAMPLING)}")
        return cls(**{**SAMPLING[sampling], **overrides})

    def sampling_params(self, seed: int | None = None) -> SamplingParams:
        """A turn's sampling; generation stops at an action's closing tag where the engine can stop on a
        string (MEM1's stop strings), and `stop_after_action` makes the same cut where it cannot."""
        return SamplingParams(self.response_tokens, self.temperature, self.top_p, seed, STOP_STRINGS)


@dataclass(frozen=True, slots=True)
class Action:
    """What one response does: its state and its first action after the state."""

    kind: str  # "search" | "answer" | "invalid"
    state: str  # inside the first <think>…</think> ("" without one)
    content: str  # the query or the answer text ("" when invalid)
    end: int  # characters of the response up to the action's closing tag; the rest is ignored


def parse_response(text: str) -> Action:
    """The state (first ``<think>…</think>``) and the first ``<search>`` or ``<answer>`` after it; a response
    with neither, or with an empty query, is "invalid" (and wholly kept)."""
    state = _STATE.search(text)
    action = _ACTION.search(text, state.end() if state else 0)
    state_text = state.group(1).strip() if state else ""
    if action is None or (action.group(1) == "search" and not action.group(2).strip()):
        return Action("invalid", state_text, "", len(text))
    return Action(action.group(1), state_text, action.group(2).strip(), action.end())


def stop_after_action(generation: Generation, action: Action, tokenizer: Any) -> Generation:
    """The generation as if sampling had stopped at its action's closing tag, as MEM1's ``</search>`` /
    ``</answer>`` stop strings do: the fewest completion tokens whose text reaches the tag, with their
    log-probs. Tokens sampled after them never influence them, so the kept tokens are exactly what a stop
    string would have sampled; the rest (often an invented ``<information>``) is never trained on."""
    if action.kind == "invalid" or action.end >= len(generation.text):
        return generation
    ids = generation.completion_ids
    n = shortest_prefix(ids, tokenizer, lambda text: len(text) >= action.end)
    text = tokenizer.decode(ids[:n], skip_special_tokens=True)
    return Generation(generation.prompt_ids, ids[:n], generation.logprobs[:n], text, "stop")


def format_hits(hits: Sequence[Hit]) -> str:
    """Search results as the agent reads them: one "Doc n (Title: …) text" line per passage."""
    if not hits:
        return NO_RESULTS
    return "\n".join(
        DOCUMENT_TEMPLATE.format(n=n, title=hit.title, text=" ".join(hit.text.split()))
        for n, hit in enumerate(hits, 1)
    )


def cut_tokens(text: str, tokenizer: Any, max_tokens: int) -> tuple[str, list[int]]:
    """`text` cut to at most `max_tokens` tokens, at a word start (the chunker's rule), and its ids."""
    ids = encode(tokenizer, text)
    if len(ids) <= max_tokens:
        return text, ids
    first = chunk_document(text, tokenizer, max_tokens)[0]
    return text[: first.end], ids[: first.token_end]


def answer_example(objectives: int) -> str:
    """``answer 1; answer 2`` for two questions: the answer format, written out for `objectives`."""
    return "; ".join(f"answer {n}" for n in range(1, objectives + 1))


@dataclass(frozen=True)
class SearchEpisode:
    """An episode as the agent reads it: its id, its questions (one string) and their gold aliases."""

    episode_id: str
    problem: str
    golden_answers: list[list[str]]
    answer: str


def prepare_episode(episode: Mapping[str, Any]) -> SearchEpisode:
    """An episode record of ``qa.compose`` (or any mapping with ``problem`` and ``golden_answers``)."""
    episode_id = str(episode.get("episode_id", episode.get("id", "?")))
    problem, golden = episode.get("problem"), _alias_lists(episode.get("golden_answers"))
    if not isinstance(problem, str) or not problem.strip():
        raise MemtrainError(f"episode {episode_id}: needs a string field 'problem' (the questions)")
    if golden is None:
        raise MemtrainError(
            f"episode {episode_id}: needs 'golden_answers', one non-empty list of aliases per question"
        )
    answer = episode.get("answer") or "; ".join(golds[0] for golds in golden)
    return SearchEpisode(episode_id, problem, golden, str(answer))


def _alias_lists(value: Any) -> list[list[str]] | None:
    """`value` as one list of gold aliases per question (lists or arrays, as JSON or Parquet give them)."""
    if value is None or isinstance(value, str) or not hasattr(value, "__iter__"):
        return None
    golden = []
    for golds in value:
        if isinstance(golds, str) or not hasattr(golds, "__iter__"):
            return None
        golden.append([str(g) for g in golds])
    return golden if golden and all(golden) else None


class SearchPrompts:
    """Renders the search agent's prompts as token ids: a fixed head per episode (chat template, instruction,
    questions), then the trajectory's kept turns, then how many turns are left."""

    def __init__(self, tokenizer: Any, config: SearchAgentConfig):
        self.tokenizer = tokenizer
        self.config = config
        self.open = encode(tokenizer, OBSERVATION_OPEN)
        self.close = encode(tokenizer, OBSERVATION_CLOSE)

    def head(self, episode: SearchEpisode) -> list[int]:
        """The instruction and questions as a chat prompt ready for the reply; refused over prompt_tokens."""
        n = len(episode.golden_answers)
        content = INSTRUCTION_TEMPLATE.format(
            questions="the question below" if n == 1 else f"the {n} questions below",
            turns="1 turn" if self.config.max_turns == 1 else f"{self.config.max_turns} turns",
            history=HISTORY_NOTES[self.config.history],
            example=answer_example(n),
            label="Question" if n == 1 else "Questions",
            problem=episode.problem,
        )
        ids = chat_prompt_ids(self.tokenizer, content)
        if len(ids) > self.config.prompt_tokens:
            raise MemtrainError(
                f"episode {episode.episode_id}: the instructions and questions take {len(ids)} tokens, "
                f"more than prompt_tokens={self.config.prompt_tokens}; shorten the questions or raise "
                "prompt_tokens"
            )
        return ids

    def turns_left(self, turn: int) -> list[int]:
        left = self.config.max_turns - turn
        return encode(self.tokenizer, LAST_TURN if left == 1 else TURNS_LEFT.format(left=left))

    def prompt(self, head: list[int], history: Sequence[list[int]], turn: int) -> list[int]:
        """Turn `turn`'s prompt: the head, the kept turns (the last one, or all of them), the turns left."""
        kept = history[-1:] if self.config.history == "constant" else history
        return [*head, *(i for ids in kept for i in ids), *self.turns_left(turn)]

    def kept_turn(self, response: str, action: Action, observation_ids: list[int]) -> list[int]:
        """What a later prompt shows of a turn: the response up to its action (cut to response_tokens), then
        the observation that answered it."""
        _, response_ids = cut_tokens(
            response[: action.end].strip(), self.tokenizer, self.config.response_tokens
        )
        return [*response_ids, *self.open, *observation_ids, *self.close]


class SearchRun:
    """One batched rollout in progress: the trajectories (episode-major), each one's prompt head and kept
    turns, and which are still active. :func:`rollout` drives it with a backend; anything that has the
    responses can drive it the same way (``prompts()``, then ``advance(generations, retriever)``)."""

    def __init__(self, episodes: Sequence[Mapping[str, Any]], tokenizer: Any, config: SearchAgentConfig):
        self.config = config
        self.builder = SearchPrompts(tokenizer, config)
        self.tokenizer = tokenizer
        self.episodes = [prepare_episode(ep) for ep in episodes]
        self.heads = [self.builder.head(ep) for ep in self.episodes]
        self.owners = [e for e in range(len(self.episodes)) for _ in range(config.group_size)]
        self.trajectories = [
            Trajectory(
                episode_id=ep.episode_id,
                sample=g,
                answer=ep.answer,
                answers=[alias for golds in ep.golden_answers for alias in golds],
            )
            for ep in self.episodes
            for g in range(config.group_size)
        ]
        self.history: list[list[list[int]]] = [[] for _ in self.trajectories]  # ids of each one's kept turns
        self.active = list(range(len(self.trajectories)))
        self.turn = 0

    @property
    def done(self) -> bool:
        return not self.active or self.turn >= self.config.max_turns

    def prompts(self) -> list[list[int]]:
        """The next turn's prompt of every active trajectory, in trajectory order."""
        return [
            self.builder.prompt(self.heads[self.owners[i]], self.history[i], self.turn) for i in self.active
        ]

    def advance(self, generations: Sequence[Generation], retriever: SearchBackend) -> None:
        """Take the turn: one response per active trajectory (in the order of :meth:`prompts`), every search
        of the turn in one retriever call; a trajectory that answered, or whose turns are spent, ends."""
        actions = [parse_response(g.text) for g in generations]
        generations = [
            stop_after_action(g, a, self.tokenizer) for g, a in zip(generations, actions, strict=True)
        ]
        last = self.turn == self.config.max_turns - 1
        observations = observe(actions, retriever, self.config, self.tokenizer, search=not last)
        still_active = []
        for i, generation, action, observation in zip(
            self.active, generations, actions, observations, strict=True
        ):
            trajectory = self.trajectories[i]
            trajectory.turns.append(Turn(action.kind, self.turn, generation))
            trajectory.memories.append(action.state)
            trajectory.actions.append(
                {
                    "turn": self.turn,
                    "kind": action.kind,
                    "query": action.content if action.kind == "search" else None,
                    "observation": observation[0] if observation else None,
                    "prompt_tokens": len(generation.prompt_ids),
                }
            )
            if observation is not None:
                self.history[i].append(self.builder.kept_turn(generation.text, action, observation[1]))
                still_active.append(i)
        self.active = still_active
        self.turn += 1

    def finish(self) -> list[Trajectory]:
        """Step 5: every trajectory scored (:func:`score_trajectory`)."""
        for trajectory, e in zip(self.trajectories, self.owners, strict=True):
            score_trajectory(trajectory, self.episodes[e].golden_answers)
        return self.trajectories


def rollout(
    episodes: Sequence[Mapping[str, Any]],
    backend: GenerationBackend,
    config: SearchAgentConfig,
    retriever: SearchBackend,
    *,
    seed: int | None = None,
    on_call: Callable[[CallStats], None] | None = None,
) -> list[Trajectory]:
    """Run ``config.group_size`` trajectories per episode; return them episode-major (episode e, sample g at
    ``e * group_size + g``), with turns, states (``memories``), per-turn ``actions``, prediction and score.

    `seed` defaults to ``config.seed``; `on_call` is called after every backend call with its
    :class:`~memtrain.trainer.agent.CallStats`.
    """
    seed = config.seed if seed is None else seed
    run = SearchRun(episodes, backend.tokenizer, config)

    def call(step: int, prompt_ids: list[list[int]]) -> list[Generation]:
        params = config.sampling_params(call_seed(seed, step))
        return reported_generate(backend, prompt_ids, params, "turn", step, on_call)

    # Steps 1-4: every active trajectory in one backend call per turn, every query of the turn in one search.
    while not run.done:
        run.advance(call(run.turn, run.prompts()), retriever)
    return run.finish()


def observe(
    actions: Sequence[Action],
    retriever: SearchBackend,
    config: SearchAgentConfig,
    tokenizer: Any,
    *,
    search: bool = True,
) -> list[tuple[str, list[int]] | None]:
    """Each action's observation (text and ids, cut to ``observation_tokens``), None after an answer: the
    formatted hits of a search, all of the turn's queries in one retriever call, or the format reminder of
    an invalid response. Without `search` (the last turn: nothing reads them) nothing is retrieved."""
    if not search:
        return [None] * len(actions)
    queries = [a.content for a in actions if a.kind == "search"]
    results = iter(retriever.search(queries, topk=config.topk) if queries else [])
    observations: list[tuple[str, list[int]] | None] = []
    for action in actions:
        if action.kind == "answer":
            observations.append(None)
            continue
        text = format_hits(next(results)) if action.kind == "search" else INVALID_OBSERVATION
        observations.append(cut_tokens(text, tokenizer, config.observation_tokens))
    return observations


def response_answers(text: str | None) -> list[str] | None:
    """The answers a response gives as the agent reads it: its first action after the state, when that is
    an ``<answer>`` (None otherwise). The training reward and ``memtrain eval``'s scores both use this."""
    if not text:
        return None
    action = parse_response(text)
    return split_answers(action.content) if action.kind == "answer" else None


def score_trajectory(trajectory: Trajectory, golden_answers: Sequence[Sequence[str]]) -> Trajectory:
    """Step 5 of :func:`rollout`: the prediction (the text of the final turn's ``<answer>``, None when the
    trajectory never answered), its exact match averaged over the questions (``em``), and ``reward = em``."""
    last = trajectory.turns[-1] if trajectory.turns else None
    if last is None or last.kind != "answer":
        trajectory.prediction, trajectory.em = None, 0.0
    else:
        trajectory.prediction = parse_response(last.generation.text).content
        trajectory.em = episode_score(response_answers(last.generation.text), golden_answers)
    trajectory.reward = trajectory.em
    return trajectory
