"""Answer extraction, SQuAD-style metrics and MemTrain's rewards (Eq. 1 and Eq. 2).

* The prediction is the content of the last complete ``\\boxed{...}`` (nested braces allowed); no box → no
  answer, which scores 0 on every metric.
* Metrics compare SQuAD-normalized strings (lower case, punctuation and articles removed, spaces collapsed)
  and take the max over a list of gold aliases: exact match, sub-EM (a gold answer contained in the
  prediction, the "accuracy" of the long-document HotpotQA table) and token F1.
* ``e2e_reward``: ``R_E = EM + λ·mean(recall EMs)`` when coupled, ``EM`` alone when not (the *Decoupled*
  ablation).

The ``*_reward`` callables follow TRL's reward-function convention ``f(prompts, completions, **kwargs) ->
list[float]`` with the gold answers in the ``answer`` (or ``answers``) column.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

_BOXED = re.compile(r"\\boxed\s*\{")
_WRAPPER = re.compile(r"^\\(?:text|textbf|textit|mathrm|mathbf|emph)\s*\{(.*)\}$", re.DOTALL)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)

Gold = str | Sequence[str]


def _matching_brace(text: str, open_index: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at `open_index`, or None if it never closes."""
    depth = 0
    for i in range(open_index, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return None


def extract_boxed(text: str | None) -> str | None:
    """Content of the last complete ``\\boxed{...}`` in `text`, or None when there is none.

    A box cut off by the length limit does not count; an earlier complete box then does. A single LaTeX text
    wrapper inside the box (``\\boxed{\\text{Paris}}``) is unwrapped.
    """
    if not text:
        return None
    for match in reversed(list(_BOXED.finditer(text))):
        close = _matching_brace(text, match.end() - 1)
        if close is not None:
            content = text[match.end() : close].strip()
            while wrapped := _WRAPPER.match(content):
                content = wrapped.group(1).strip()
            return content
    return None


def normalize_answer(text: str) -> str:
    """SQuAD normalization: lower case, no punctuation, no articles (a/an/the), single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _golds(gold: Gold) -> list[str]:
    return [gold] if isinstance(gold, str) else [g for g in gold if isinstance(g, str)]


def exact_match(prediction: str | None, gold: Gold) -> float:
    """1.0 if the normalized prediction equals a normalized gold alias."""
    if prediction is None:
        return 0.0
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in _golds(gold)))


def sub_exact_match(prediction: str | None, gold: Gold) -> float:
    """1.0 if a (non-empty) normalized gold alias is contained in the normalized prediction."""
    if prediction is None:
        return 0.0
    pred = normalize_answer(prediction)
    return float(any((g := normalize_answer(alias)) and g in pred for alias in _golds(gold)))


def token_f1(prediction: str | None, gold: Gold) -> float:
    """SQuAD token F1 between the normalized prediction and the best gold alias."""
    if prediction is None:
        return 0.0
    pred_tokens = normalize_answer(prediction).split()
    best = 0.0
    for alias in _golds(gold):
        gold_tokens = normalize_answer(alias).split()
        if not pred_tokens or not gold_tokens:
            best = max(best, float(pred_tokens == gold_tokens))
            continue
        common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
        if common:
            precision, recall = common / len(pred_tokens), common / len(gold_tokens)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


METRICS: dict[str, Callable[[str | None, Gold], float]] = {
    "em": exact_match,
    "sub_em": sub_exact_match,
    "f1": token_f1,
}


def e2e_reward(
    em: float, recall_rewards: Sequence[float], weight: float = 0.5, coupled: bool = True
) -> float:
    """Eq. 2: ``R_E = EM + weight·mean(recall_rewards)``; EM alone when not coupled or when there was no
    probe."""
    if not coupled or not recall_rewards:
        return float(em)
    return float(em) + weight * sum(recall_rewards) / len(recall_rewards)


# --- TRL-style reward functions -----------------------------------------------------------------------------


def completion_text(completion: Any) -> str:
    """A completion as TRL passes it: plain text, or a conversation whose last message is the answer."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return str(completion)


def boxed_reward(metric: str = "em", answer_column: str = "answer") -> Callable[..., list[float]]:
    """A TRL reward function scoring the last ``\\boxed{}`` of each completion against its gold answer(s).

    The gold comes from the dataset column `answer_column` (falling back to ``answers``); each row may hold
    one string or a list of aliases.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    score = METRICS[metric]

    def reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        golds = kwargs.get(answer_column)
        if golds is None:
            golds = kwargs.get("answers")
        if golds is None:
            raise ValueError(f"reward {metric}: the batch has no {answer_column!r} (or 'answers') column")
        return [score(extract_boxed(completion_text(c)), g) for c, g in zip(completions, golds, strict=True)]

    reward.__name__ = f"boxed_{metric}"
    return reward


exact_match_reward = boxed_reward("em")
sub_exact_match_reward = boxed_reward("sub_em")
f1_reward = boxed_reward("f1")
