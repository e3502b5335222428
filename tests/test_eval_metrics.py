"""Metrics and answer parsing of `memtrain eval`, on hand-computed cases with real HotpotQA dev answers."""

import json
from pathlib import Path

import numpy as np
import pytest

from memtrain.evals import scoring
from memtrain.trainer import rewards
from memtrain.trainer.rewards import (
    METRICS,
    contains,
    exact_match,
    extract_answer_is,
    parse_answer,
    sub_em,
    sub_exact_match,
    token_f1,
)

HOTPOT_DEV = Path(__file__).resolve().parents[2] / "shared/data/hotpotqa/hotpot_dev_distractor_v1.head40.json"


@pytest.fixture(scope="module")
def dev_answers() -> dict[str, str]:
    """Real HotpotQA dev answers, by question."""
    return {q["question"]: q["answer"] for q in json.loads(HOTPOT_DEV.read_text())}


def test_sub_em_is_memagents_containment_in_either_direction_on_the_first_gold(dev_answers):
    gold = dev_answers['The director of the romantic comedy "Big Stone Gap" is based in what New York city?']
    assert gold == "Greenwich Village, New York City"
    assert sub_em("She lives in Greenwich Village, New York City.", [gold]) == 1.0  # gold in prediction
    assert sub_em("Greenwich Village", [gold]) == 1.0  # prediction in gold: MemAgent counts it too
    assert sub_em("the Village", [gold]) == 1.0  # normalized "village" is in the gold
    assert sub_em("Brooklyn", [gold]) == 0.0
    # only the first gold alias is scored, as MemAgent scores answers[0]
    assert sub_em("Big Apple", [gold, "Big Apple"]) == 0.0
    assert sub_em("Big Apple", ["Big Apple", gold]) == 1.0


def test_an_empty_or_missing_prediction_scores_zero_under_sub_em():
    assert sub_em(None, ["Animorphs"]) == 0.0
    assert sub_em("", ["Animorphs"]) == 0.0
    # MemAgent's code would count these ("" is a substring of every gold); memtrain does not
    assert sub_em(".", ["Animorphs"]) == 0.0
    assert sub_em("The", ["Animorphs"]) == 0.0
    assert sub_em("Animorphs", [""]) == 0.0
    assert sub_em("Animorphs", []) == 0.0


def test_contains_keeps_memtrains_one_directional_sub_em_under_its_old_name_too():
    assert contains("It happened in Paris, France.", ["Paris"]) == 1.0
    assert contains("Paris", ["Paris, France"]) == 0.0  # the direction sub_em adds
    assert contains("Lyon", ["Paris", "Lyon"]) == 1.0  # any alias counts
    assert sub_exact_match is contains
    assert METRICS["sub_em"] is sub_em and METRICS["contains"] is contains
    assert rewards.sub_exact_match_reward([""], [r"\boxed{Paris}"], answer=[["Paris, France"]]) == [0.0]
    assert rewards.sub_em_reward([""], [r"\boxed{Paris}"], answer=[["Paris, France"]]) == [1.0]


def test_f1_is_zero_on_a_yes_no_mismatch_as_hotpotqas_official_f1(dev_answers):
    gold = dev_answers["Were Scott Derrickson and Ed Wood of the same nationality?"]
    assert gold == "yes"
    assert token_f1("yes", gold) == 1.0
    assert token_f1("Yes.", gold) == 1.0
    assert token_f1("no", gold) == 0.0
    assert token_f1("yes they were", gold) == 0.0  # SQuAD F1 would give 0.5
    assert token_f1("no", "no way") == 0.0  # SQuAD F1 would give 2/3
    assert token_f1("noanswer", "Paris") == 0.0


def test_em_and_f1_take_the_best_of_several_gold_aliases(dev_answers):
    gold = dev_answers[
        "The arena where the Lewiston Maineiacs played their home games can seat how many people?"
    ]
    aliases = [gold, "3,677"]  # "3,677 seated" and a bare-number alias
    assert exact_match("3,677", [gold]) == 0.0
    assert exact_match("3677", aliases) == 1.0  # punctuation dropped, second alias matches
    assert token_f1("3,677", [gold]) == pytest.approx(2 * 1.0 * 0.5 / 1.5)  # precision 1, recall 1/2
    assert token_f1("3,677", aliases) == 1.0
    manager = dev_answers[
        "The football manager who recruited David Beckham managed Manchester United during what timeframe?"
    ]
    assert manager == "from 1986 to 2013"
    # prediction "1986 to 2013": precision 3/3, recall 3/4 → F1 6/7; "1986-2013" is one token "19862013" → 0
    assert token_f1("1986 to 2013", [manager, "1986-2013"]) == pytest.approx(6 / 7)
    assert token_f1("1986-2013", [manager, "1986-2013"]) == 1.0


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (r"Both are American, so \boxed{yes}.", ("yes", "boxed")),
        (r"\boxed{Animorphs} ... wait, \boxed{The Animorphs}", ("The Animorphs", "boxed")),
        ("Therefore, the answer is Chief of Protocol.", ("Chief of Protocol", "answer_is")),
        # the box wins over "the answer is"
        (r"Therefore, the answer is Kansas. \boxed{Kansas Song}", ("Kansas Song", "boxed")),
        # MemAgent cuts after the *last* "the answer is", drops markdown stars, strips spaces and periods
        (
            "I think the answer is X. No: the answer is **YG Entertainment**.",
            ("YG Entertainment", "answer_is"),
        ),
        # ...and keeps whatever follows (containment scoring tolerates it)
        ("So the answer is 1999. Hope this helps", ("1999. Hope this helps", "answer_is")),
        # the phrase is matched case-sensitively, as MemAgent does
        ("The answer is Sonic.", (None, None)),
        ("<think>maybe \\boxed{Tails}</think>\n\\boxed{Sonic}", ("Sonic", "boxed")),
        ("<think>the answer is Tails</think>\nTherefore, the answer is Sonic", ("Sonic", "answer_is")),
        ("<think>\\boxed{Tails}</think>", ("Tails", "boxed")),  # nothing after </think>: the whole text
        (
            "the answer is Arena of Khazan<\uff5cend\u2581of\u2581sentence\uff5c>",
            ("Arena of Khazan", "answer_is"),
        ),
        (r"\boxed{}", ("", "boxed")),
        (r"\boxed{Berg", (None, None)),  # a box cut off by the length limit
        ("I do not know.", (None, None)),
        ("", (None, None)),
        (None, (None, None)),
    ],
)
def test_the_answer_is_the_last_box_else_the_text_after_the_answer_is(response, expected):
    assert parse_answer(response) == expected


def test_extract_answer_is_returns_none_without_the_phrase():
    assert extract_answer_is("Answer: Paris") is None
    assert extract_answer_is("Therefore, the answer is .") == ""


def _record(qid: str, sample: int, response, answers, num_docs=50, failed=None, **extra):
    return {
        "key": f"{qid}@{num_docs}#{sample}",
        "episode_id": f"{qid}@{num_docs}",
        "question_id": qid,
        "num_docs": num_docs,
        "sample": sample,
        "answers": answers,
        "response": response,
        "failed": response is None if failed is None else failed,
        "error": "call failed" if response is None else None,
        "memories": [],
        "num_chunks": 0,
        "doc_tokens": 7000,
        "cut_tokens": 0,
        "prompt_tokens": 7100,
        "completion_tokens": 20,
        "seconds": 2.0,
        **extra,
    }


def test_a_failed_call_an_unparsed_answer_and_an_empty_box_all_score_zero_and_are_counted():
    scores = scoring.score_records(
        [
            _record("a", 0, r"\boxed{Animorphs}", ["Animorphs"]),
            _record("b", 0, None, ["Animorphs"]),
            _record("c", 0, "It is Animorphs.", ["Animorphs"]),  # right answer, but no parser finds it
            _record("d", 0, r"\boxed{ }", ["Animorphs"]),
        ]
    )
    assert [s["sub_em"] for s in scores] == [1.0, 0.0, 0.0, 0.0]
    assert [s["parser"] for s in scores] == ["boxed", "none", "none", "boxed"]
    assert [(s["failed"], s["empty"]) for s in scores] == [
        (False, False),
        (True, False),
        (False, True),
        (False, True),
    ]
    cell = scoring.summarize_cell(scores, resamples=200)
    assert cell["n"] == 4 and cell["n_failed"] == 1 and cell["n_no_answer"] == 2
    assert cell["accuracy"]["mean"] == pytest.approx(25.0)  # failed calls stay in the denominator
    assert cell["parsers"] == {"boxed": 2, "answer_is": 0, "none": 2}


def test_samples_are_averaged_per_question_before_the_mean_over_questions():
    records = [_record("a", s, r"\boxed{yes}", ["yes"]) for s in range(4)]
    records.append(_record("b", 0, r"\boxed{yes}", ["no"]))
    cell = scoring.summarize_cell(scoring.score_records(records), resamples=200)
    assert cell["n"] == 2 and cell["n_items"] == 5
    assert cell["samples_per_question"] == {"min": 1, "max": 4}
    assert cell["accuracy"]["mean"] == pytest.approx(50.0)  # (1 + 0) / 2, not 4/5 of the items


def test_a_record_appended_twice_counts_once():
    first = _record("a", 0, r"\boxed{no}", ["yes"])
    again = _record("a", 0, r"\boxed{yes}", ["yes"])
    scores = scoring.score_records([first, again])
    assert len(scores) == 1 and scores[0]["sub_em"] == 1.0  # the later record wins


def test_the_bootstrap_interval_is_deterministic_and_contains_the_mean():
    rng = np.random.default_rng(7)
    values = (rng.random(128) < 0.6).astype(float)
    first = scoring.bootstrap_interval(values, seed=3)
    assert scoring.bootstrap_interval(values, seed=3) == first
    assert scoring.bootstrap_interval(list(values), seed=3) == first
    assert scoring.bootstrap_interval(values, seed=4) != first
    low, high = first
    assert low < values.mean() < high
    # with 128 questions at ~60% the 95% interval is about ±8.5 points (normal approximation)
    half = 1.96 * np.sqrt(values.mean() * (1 - values.mean()) / values.size)
    assert (high - low) / 2 == pytest.approx(half, abs=0.015)


def test_the_bootstrap_interval_of_identical_values_or_one_value_has_no_width():
    assert scoring.bootstrap_interval([1.0] * 10) == (1.0, 1.0)
    assert scoring.bootstrap_interval([0.5]) == (0.5, 0.5)
    assert all(np.isnan(scoring.bootstrap_interval([])))


def test_the_average_over_lengths_resamples_questions_paired_across_lengths():
    records = [_record(q, 0, r"\boxed{yes}", ["yes" if q in "ab" else "no"], num_docs=50) for q in "abcd"]
    records += [_record(q, 0, r"\boxed{yes}", ["yes" if q == "a" else "no"], num_docs=100) for q in "abcd"]
    scores = scoring.score_records(records)
    average = scoring.average_over_lengths(scores, [50, 100], resamples=500)
    assert average["mean"] == pytest.approx((50.0 + 25.0) / 2)
    assert average["low"] <= average["mean"] <= average["high"]
    assert average["lengths"] == [50, 100]
