"""The constant-memory search agent: SmolLM2-135M-Instruct on real NQ questions (two per episode, as MEM1
composes them), searching a real BM25 index of the HotpotQA dev paragraphs. A 135M model almost never writes
a valid action, so the search path is also driven with hand-written responses through the same `SearchRun`
that `rollout` drives (real tokenizer, real retriever)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from agent_support import smollm2_backend, smollm2_tokenizer
from test_retriever import paragraphs, write_jsonl

from memtrain.errors import ConfigError, MemtrainError
from memtrain.search import Retriever
from memtrain.search.agent import (
    INVALID_OBSERVATION,
    LAST_TURN,
    OBSERVATION_CLOSE,
    OBSERVATION_OPEN,
    TURNS_LEFT,
    SearchAgentConfig,
    SearchPrompts,
    SearchRun,
    format_hits,
    parse_response,
    prepare_episode,
    rollout,
    stop_after_action,
)
from memtrain.search.qa import compose, episode_score, load_questions, split_answers
from memtrain.trainer.chunking import encode
from memtrain.trainer.types import Generation

SHARED = Path(__file__).resolve().parents[2] / "shared/data"
HOTPOT_DEV = SHARED / "hotpotqa/hotpot_dev_distractor_v1.head40.json"
NQ_TEST = SHARED / "nq/test.head.jsonl"

# Small enough for 2 CPU cores: 2 episodes, 3 turns, 32-token responses, observations cut at 24 tokens.
CONFIG = SearchAgentConfig(max_turns=3, response_tokens=32, observation_tokens=24, topk=2)


class CountingRetriever:
    """A real retriever that also records the queries of every `search` call."""

    def __init__(self, retriever: Retriever):
        self.retriever = retriever
        self.calls: list[list[str]] = []

    def search(self, queries: list[str], topk: int = 3):
        self.calls.append(list(queries))
        return self.retriever.search(queries, topk=topk)


@pytest.fixture(scope="module")
def retriever(tmp_path_factory) -> Retriever:
    records = json.loads(HOTPOT_DEV.read_text())
    return Retriever.open(write_jsonl(tmp_path_factory.mktemp("wiki") / "hotpot.jsonl", paragraphs(records)))


@pytest.fixture(scope="module")
def episodes() -> list[dict]:
    return compose(load_questions(NQ_TEST, "nq"))[:2]  # NQ test questions 0-3, two per episode


@pytest.fixture(scope="module")
def constant_run(episodes, retriever):
    counting, calls = CountingRetriever(retriever), []
    trajectories = rollout(episodes, smollm2_backend(), CONFIG, counting, on_call=calls.append)
    return trajectories, calls, counting.calls


@pytest.fixture(scope="module")
def full_run(episodes, retriever):
    return rollout(episodes[:1], smollm2_backend(), dataclasses.replace(CONFIG, history="full"), retriever)


def tokenizer():
    return smollm2_tokenizer()  # the backend's tokenizer, without loading the model


def overhead(config: SearchAgentConfig) -> int:
    """Tokens a kept turn adds besides its response and observation, plus the longest turns-left line."""
    tok = tokenizer()
    hints = [LAST_TURN, TURNS_LEFT.format(left=config.max_turns)]
    return (
        len(encode(tok, OBSERVATION_OPEN))
        + len(encode(tok, OBSERVATION_CLOSE))
        + max(len(encode(tok, h)) for h in hints)
    )


def constant_bound(trajectory, config: SearchAgentConfig) -> int:
    first = len(trajectory.turns[0].generation.prompt_ids)
    return first + config.response_tokens + config.observation_tokens + overhead(config)


def handwritten(prompt_ids: list[int], text: str) -> Generation:
    """A response written by hand, as a backend would return it."""
    ids = encode(tokenizer(), text)
    return Generation(list(prompt_ids), ids, [0.0] * len(ids), text)


def drive(run: SearchRun, responses: list[dict[int, str]], retriever) -> list[list[int]]:
    """Take `run`'s turns with hand-written responses (turn → {trajectory index: text}); the prompts."""
    prompts = []
    for by_trajectory in responses:
        ids = run.prompts()
        assert sorted(by_trajectory) == run.active
        run.advance(
            [handwritten(p, by_trajectory[i]) for i, p in zip(run.active, ids, strict=True)], retriever
        )
        prompts.append(ids)
    assert run.done
    return prompts


# --- settings, episodes, parsing ----------------------------------------------------------------------------


def test_defaults_are_mem1s_and_bad_settings_are_refused():
    config = SearchAgentConfig()
    assert (config.max_turns, config.response_tokens, config.observation_tokens) == (6, 1000, 1000)
    assert (config.topk, config.history, config.group_size) == (3, "constant", 1)
    assert (config.temperature, config.top_p) == (0.0, 0.95)  # MEM1's evaluation sampling: greedy
    train = SearchAgentConfig.with_sampling("train", group_size=4)
    assert (train.temperature, train.top_p, train.group_size) == (1.0, 1.0, 4)
    assert SearchAgentConfig.with_sampling("eval").temperature == 0.0
    with pytest.raises(ConfigError, match="max_turns must be at least 1"):
        SearchAgentConfig(max_turns=0)
    with pytest.raises(ConfigError, match="history must be one of constant, full"):
        SearchAgentConfig(history="window")
    with pytest.raises(ConfigError, match="top_p"):
        SearchAgentConfig(top_p=0)
    with pytest.raises(ConfigError, match="unknown sampling 'hot'"):
        SearchAgentConfig.with_sampling("hot")


def test_episodes_need_questions_and_golds_and_must_fit_the_prompt_budget(episodes):
    with pytest.raises(MemtrainError, match="episode e1: needs a string field 'problem'"):
        prepare_episode({"episode_id": "e1", "golden_answers": [["x"]]})
    with pytest.raises(MemtrainError, match="episode e2: needs 'golden_answers'"):
        prepare_episode({"episode_id": "e2", "problem": "who?", "golden_answers": ["flat", "list"]})
    prepared = prepare_episode(episodes[0])
    assert prepared.golden_answers == [["Wilhelm Conrad Röntgen"], ["May 18, 2018"]]
    assert prepared.answer == "Wilhelm Conrad Röntgen; May 18, 2018"
    with pytest.raises(MemtrainError, match=r"episode nq:test_0\+test_1: .* more than prompt_tokens=64"):
        SearchPrompts(tokenizer(), SearchAgentConfig(prompt_tokens=64)).head(prepared)


def test_a_response_is_its_state_then_its_first_action():
    search = parse_response(
        "<think>x</think><search>who got the first nobel prize</search><answer>no</answer>"
    )
    assert (search.kind, search.state, search.content) == ("search", "x", "who got the first nobel prize")
    text = "<think>y</think>\n<answer>a; b</answer> and then <answer>c</answer>"
    answer = parse_response(text)
    assert (answer.kind, answer.state, answer.content) == ("answer", "y", "a; b")
    assert text[: answer.end] == "<think>y</think>\n<answer>a; b</answer>"  # the rest is ignored
    assert split_answers(answer.content) == ["a", "b"]
    # an action inside the state is part of the state, not the turn's action
    assert parse_response("<think>maybe <search>q</search></think> I am not sure").kind == "invalid"
    assert parse_response("<search>no state</search>").kind == "search"
    assert parse_response("<think>s</think><search>  </search>").kind == "invalid"  # empty query
    nothing = parse_response("The answer is Paris.")
    assert (nothing.kind, nothing.state, nothing.end) == ("invalid", "", len("The answer is Paris."))


# --- hand-written responses through the agent's own loop ----------------------------------------------------


def test_every_search_of_a_turn_goes_to_the_retriever_in_one_call(episodes, retriever):
    config = dataclasses.replace(CONFIG, group_size=2, observation_tokens=64, topk=3)
    run, counting = SearchRun(episodes, tokenizer(), config), CountingRetriever(retriever)
    prompts = drive(
        run,
        [
            {
                0: "<think>I know neither.</think><search>first Nobel Prize in Physics</search>",
                1: "<think>Nothing yet.</think><search>Deadpool 2 release date</search>",
                2: "I think it is Olivia.",  # no action
                3: "<think>I know both.</think><answer>MFSK; till September</answer>",
            },
            {
                0: "<think>Found it.</think><answer>Wilhelm Conrad Röntgen; May 18, 2018</answer> <answer>x",
                1: "<think>Still need both.</think><search>Nobel Prize in Physics 1901</search>",
                2: "<think>Short wave.</think><search>shortwave broadcast digital mode</search>",
            },
            {
                1: "<think>Out of turns.</think><search>one more search</search>",  # the last turn: not run
                2: "<think>Only one.</think><answer>Olivia</answer>",  # one answer for two questions
            },
        ],
        counting,
    )
    assert counting.calls == [
        ["first Nobel Prize in Physics", "Deadpool 2 release date"],
        ["Nobel Prize in Physics 1901", "shortwave broadcast digital mode"],
    ]
    trajectories = run.finish()
    assert [[turn.kind for turn in t.turns] for t in trajectories] == [
        ["search", "answer"], ["search", "search", "search"], ["invalid", "search", "answer"], ["answer"],
    ]  # fmt: skip
    assert [t.em for t in trajectories] == [1.0, 0.0, 0.0, 1.0]
    assert [t.prediction for t in trajectories] == [
        "Wilhelm Conrad Röntgen; May 18, 2018", None, "Olivia", "MFSK; till September",
    ]  # fmt: skip
    assert [t.memories for t in trajectories][1] == ["Nothing yet.", "Still need both.", "Out of turns."]
    tok = tokenizer()
    first = trajectories[0].actions[0]
    hits = retriever.search(["first Nobel Prize in Physics"], topk=3)[0]
    assert first["query"] == "first Nobel Prize in Physics"
    assert first["observation"].startswith("Doc 1 (Title: ")
    assert format_hits(hits).startswith(first["observation"])
    assert len(first["observation"]) < len(format_hits(hits))  # three passages are longer than 64 tokens
    assert trajectories[2].actions[0]["observation"] == INVALID_OBSERVATION
    assert trajectories[1].actions[2]["observation"] is None  # nothing reads a search on the last turn
    for t in trajectories:
        for turn, action in zip(t.turns, t.actions, strict=True):
            assert action["prompt_tokens"] == len(turn.generation.prompt_ids)
            if action["observation"] is not None:
                assert len(encode(tok, action["observation"])) <= config.observation_tokens
    # turn 1 of trajectory 0 reads its previous response up to the action, then that search's results
    seen = tok.decode(prompts[1][0])
    assert "<search>first Nobel Prize in Physics</search>\n\n<information>\n" + first["observation"] in seen
    assert seen.endswith(TURNS_LEFT.format(left=2))


def test_constant_history_is_bounded_while_full_history_grows(episodes, retriever):
    responses = [
        {0: f"<think>Turn {t}: Röntgen? Deadpool?</think><search>Nobel Prize Physics turn {t}</search>"}
        for t in range(4)
    ]
    config, prompts = dataclasses.replace(CONFIG, max_turns=4, observation_tokens=64), {}
    for history in ("constant", "full"):
        run = SearchRun(episodes[:1], tokenizer(), dataclasses.replace(config, history=history))
        prompts[history] = [ids[0] for ids in drive(run, responses, retriever)]
        trajectory = run.finish()[0]
        assert trajectory.prediction is None and trajectory.em == trajectory.reward == 0.0
    constant, full = prompts["constant"], prompts["full"]
    bound = len(constant[0]) + config.response_tokens + config.observation_tokens + overhead(config)
    assert all(len(p) <= bound for p in constant)
    assert [len(p) for p in full] == sorted(len(p) for p in full) and len(full[3]) > bound
    last_constant, last_full = tokenizer().decode(constant[3]), tokenizer().decode(full[3])
    assert "turn 2" in last_constant.lower() and "turn 1" not in last_constant.lower()  # only the last turn
    assert all(f"turn {t}" in last_full.lower() for t in range(3))
    assert last_constant.endswith(LAST_TURN) and last_full.endswith(LAST_TURN)


# --- SmolLM2 rollouts ---------------------------------------------------------------------------------------


def test_rollout_respects_the_turn_cap_and_every_token_budget(constant_run, episodes):
    trajectories, calls, _ = constant_run
    assert [(t.episode_id, t.sample) for t in trajectories] == [(e["episode_id"], 0) for e in episodes]
    tok = tokenizer()
    for t, episode in zip(trajectories, episodes, strict=True):
        assert 1 <= len(t.turns) <= CONFIG.max_turns
        assert [turn.step for turn in t.turns] == list(range(len(t.turns)))
        assert len(t.memories) == len(t.actions) == len(t.turns) and t.answer == episode["answer"]
        for turn, action in zip(t.turns, t.actions, strict=True):
            g = turn.generation
            assert 0 < len(g.completion_ids) == len(g.logprobs) <= CONFIG.response_tokens
            assert turn.kind == action["kind"] == parse_response(g.text).kind
            assert action["prompt_tokens"] == len(g.prompt_ids) <= constant_bound(t, CONFIG)
            if action["observation"] is not None:
                assert len(encode(tok, action["observation"])) <= CONFIG.observation_tokens
    assert any(len(t.turns) == CONFIG.max_turns for t in trajectories)  # greedy SmolLM2 never answers here
    # one backend call per turn, over every trajectory still active
    assert [c.prompts for c in calls] == [
        sum(len(t.turns) > step for t in trajectories) for step in range(len(calls))
    ]


def test_rollout_sends_each_turns_queries_in_one_search(constant_run):
    trajectories, _, searches = constant_run
    expected = []
    for step in range(CONFIG.max_turns - 1):  # the last turn's searches are not run
        queries = [t.actions[step]["query"] for t in trajectories if len(t.turns) > step]
        if any(q is not None for q in queries):
            expected.append([q for q in queries if q is not None])
    assert searches == expected


def test_turn_t_reads_only_the_previous_turn_in_the_constant_variant(constant_run, episodes):
    trajectories, _, _ = constant_run
    tok, builder = tokenizer(), SearchPrompts(tokenizer(), CONFIG)
    for t, episode in zip(trajectories, episodes, strict=True):
        head = builder.head(prepare_episode(episode))
        assert t.turns[0].generation.prompt_ids == head + builder.turns_left(0)
        for previous, turn, action in zip(t.turns, t.turns[1:], t.actions, strict=False):
            response = previous.generation.text
            kept = builder.kept_turn(response, parse_response(response), encode(tok, action["observation"]))
            assert turn.generation.prompt_ids == head + kept + builder.turns_left(turn.step)


def test_full_history_keeps_every_earlier_turn(full_run):
    (t,) = full_run
    prompts = [turn.generation.prompt_ids for turn in t.turns]
    assert len(prompts) == CONFIG.max_turns
    hints = [SearchPrompts(tokenizer(), CONFIG).turns_left(step) for step in range(len(prompts))]
    for step in range(1, len(prompts)):
        kept = prompts[step - 1][: -len(hints[step - 1])]  # the earlier prompt without its turns-left line
        assert prompts[step][: len(kept)] == kept and len(prompts[step]) > len(prompts[step - 1])


def test_scores_are_the_episode_score_of_the_parsed_answer(constant_run, full_run, episodes):
    trajectories, _, _ = constant_run
    for t, episode in zip([*trajectories, *full_run], [*episodes, episodes[0]], strict=True):
        last = t.turns[-1]
        action = parse_response(last.generation.text)
        answers = split_answers(action.content) if last.kind == "answer" else None
        assert t.em == t.reward == episode_score(answers, episode["golden_answers"])
        assert t.prediction == (action.content if last.kind == "answer" else None)


def test_batched_rollout_equals_one_episode_at_a_time_when_greedy(constant_run, episodes, retriever):
    trajectories, _, _ = constant_run
    for t, episode in zip(trajectories, episodes, strict=True):
        (single,) = rollout([episode], smollm2_backend(), CONFIG, retriever)
        assert [turn.generation.prompt_ids for turn in single.turns] == [
            turn.generation.prompt_ids for turn in t.turns
        ]
        assert [turn.generation.completion_ids for turn in single.turns] == [
            turn.generation.completion_ids for turn in t.turns
        ]
        assert (single.memories, single.actions, single.em) == (t.memories, t.actions, t.em)


def test_training_sampling_groups_are_episode_major_and_a_last_turn_must_answer(episodes, retriever):
    config = SearchAgentConfig.with_sampling("train", max_turns=1, group_size=2, response_tokens=12)
    counting = CountingRetriever(retriever)
    trajectories = rollout(episodes, smollm2_backend(), config, counting, seed=3)
    assert [(t.episode_id, t.sample) for t in trajectories] == [
        (e["episode_id"], g) for e in episodes for g in range(2)
    ]
    assert all(len(t.turns) == 1 for t in trajectories) and counting.calls == []
    for t in trajectories:
        assert tokenizer().decode(t.turns[0].generation.prompt_ids).endswith(LAST_TURN)


def test_a_generation_stops_after_its_action_as_a_stop_string_would_stop_it():
    tokenizer = smollm2_tokenizer()
    text = "<think>need the year</think> <search>first nobel prize physics</search>\n<information>made up"
    ids = encode(tokenizer, text)
    sampled = Generation([1, 2, 3], ids, [-0.5 - i for i in range(len(ids))], text, "length")
    cut = stop_after_action(sampled, parse_response(text), tokenizer)
    assert cut.text.endswith("</search>") and "<information>" not in cut.text
    assert cut.completion_ids == ids[: len(cut.completion_ids)] and len(cut.completion_ids) < len(ids)
    assert cut.logprobs == sampled.logprobs[: len(cut.completion_ids)] and cut.finish_reason == "stop"
    assert not tokenizer.decode(cut.completion_ids[:-1], skip_special_tokens=True).endswith("</search>")
    invalid = "no action here"
    assert stop_after_action(sampled, parse_response(invalid), tokenizer) is sampled


def test_held_out_figures_of_search_trajectories_are_the_search_agents(constant_run):
    from memtrain.trainer.config import TrainConfig
    from memtrain.trainer.metrics import trajectory_metrics

    trajectories, _, _ = constant_run
    metrics = trajectory_metrics(trajectories)
    assert {"answered", "turns", "searches", "invalid_turns"} <= set(metrics)
    assert "boxed" not in metrics and "chunks" not in metrics
    assert metrics["turns"] == sum(len(t.turns) for t in trajectories) / len(trajectories)
    # held-out evaluation during search-qa training samples as MEM1 evaluates: greedily
    assert (TrainConfig(task="search-qa").eval_temperature, TrainConfig().eval_temperature) == (0.0, 0.7)
