import pytest

from memtrain.trainer.rewards import (
    boxed_reward,
    e2e_reward,
    exact_match,
    exact_match_reward,
    extract_boxed,
    f1_reward,
    normalize_answer,
    sub_exact_match,
    sub_exact_match_reward,
    token_f1,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"The answer is \boxed{Paris}.", "Paris"),
        (r"\boxed{1990} then on reflection \boxed{1991}", "1991"),  # the last box wins
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),  # nested braces
        (r"\boxed{ {a} and {b {c}} }", "{a} and {b {c}}"),
        (r"\boxed{\text{New York City}}", "New York City"),  # a text wrapper is unwrapped
        (r"\boxed {Rome}", "Rome"),
        (r"\boxed{Oslo} and then \boxed{Berg", "Oslo"),  # a box cut off by the length limit does not count
        ("The answer is Paris.", None),  # no box: no answer
        (r"\boxed{unclosed", None),
        ("", None),
        (None, None),
    ],
)
def test_the_last_complete_boxed_answer_is_the_prediction(text, expected):
    assert extract_boxed(text) == expected


def test_squad_normalization_drops_case_punctuation_articles_and_extra_spaces():
    assert normalize_answer("  The  U.S.  Army!") == "us army"
    assert normalize_answer("An apple, a day") == "apple day"
    assert normalize_answer("Theatre") == "theatre"  # "the" inside a word stays


def test_exact_match_takes_the_best_gold_alias_and_no_answer_scores_zero():
    assert exact_match("the United States", ["USA", "United States"]) == 1.0
    assert exact_match("United States of America", ["USA", "United States"]) == 0.0
    assert exact_match("1990", "1990") == 1.0
    assert exact_match(None, "1990") == 0.0
    assert exact_match("", "") == 1.0


def test_sub_exact_match_is_containment_of_a_normalized_gold_alias():
    assert sub_exact_match("It happened in Paris, France.", ["Paris"]) == 1.0
    assert sub_exact_match("Paris", ["Paris, France"]) == 0.0
    assert sub_exact_match("anything", [""]) == 0.0  # an empty gold is contained everywhere: never counts
    assert sub_exact_match(None, ["Paris"]) == 0.0


def test_token_f1_is_squad_f1_with_the_max_over_aliases():
    assert token_f1("New York City", "New York") == pytest.approx(0.8)
    assert token_f1("the cat", ["dog", "a cat"]) == 1.0
    assert token_f1("Berlin", "Paris") == 0.0
    assert token_f1(None, "Paris") == 0.0


def test_end_to_end_reward_adds_half_the_mean_recall_success_when_coupled():
    assert e2e_reward(1.0, [1, 0, 1, 1, 0, 0, 1, 1]) == pytest.approx(1.0 + 0.5 * 5 / 8)
    assert e2e_reward(0.0, [1.0] * 8) == pytest.approx(0.5)
    assert e2e_reward(1.0, [1.0] * 8, weight=0.25) == pytest.approx(1.25)
    assert e2e_reward(1.0, [1.0] * 8, coupled=False) == 1.0  # the Decoupled ablation: EM alone
    assert e2e_reward(1.0, []) == 1.0  # no recall probe: EM alone
    assert 0.0 <= e2e_reward(1.0, [1.0] * 8) <= 1.5


def test_reward_functions_follow_trls_calling_convention():
    prompts = ["q1", "q2", "q3"]
    completions = [
        r"so \boxed{Paris}",
        [{"role": "assistant", "content": r"\boxed{the Louvre museum}"}],
        "no box",
    ]
    answers = ["Paris", ["Louvre", "The Louvre"], "x"]
    assert exact_match_reward(prompts, completions, answer=answers) == [1.0, 0.0, 0.0]
    assert sub_exact_match_reward(prompts, completions, answer=answers) == [1.0, 1.0, 0.0]
    assert f1_reward(prompts, completions, answers=answers)[1] == pytest.approx(2 / 3)
    assert exact_match_reward.__name__ == "boxed_em"


def test_a_reward_function_without_gold_answers_says_which_column_is_missing():
    with pytest.raises(ValueError, match="answer"):
        exact_match_reward(["q"], [r"\boxed{a}"])
    with pytest.raises(ValueError, match="unknown metric"):
        boxed_reward("bleu")
