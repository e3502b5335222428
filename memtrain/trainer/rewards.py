"""Answer extraction, SQuAD-style metrics and MemTrain's rewards (Eq. 1 and Eq. 2): the one home of every
metric (training rewards and ``memtrain eval`` scoring import them from here).

* Training: the prediction is the content of the last complete ``\\boxed{...}`` (nested braces allowed); no
  box → no answer, which scores 0 on every metric.
* Evaluation (:func:`parse_answer`): the last complete ``\\boxed{...}``, else the text after the last
  "the answer is" (MemAgent's parser for its non-boxed prompts); the parser that matched is returned too.
* Metrics compare SQuAD-normalized strings (lower case, punctuation and articles removed, spaces collapsed):
  ``em`` (exact match, max over gold aliases), ``f1`` (token F1, max over aliases; 0 on a yes/no mismatch as
  HotpotQA's official F1), ``sub_em`` (MemAgent's "accuracy" of the long-document HotpotQA table:
  containment in either direction, first gold only) and ``contains`` (a gold alias contained in the
  prediction; memtrain's earlier one-directional sub-EM, kept under this name and as ``sub_exact_match``).
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


_THINK_END = "</think>"
_ANSWER_IS = "the answer is"
# End-of-turn markers MemAgent removes from the text after "the answer is" (DeepSeek-R1 distills print them).
_ANSWER_IS_JUNK = ("<\uff5cAssistant\uff5c>", "<\uff5cend\u2581of\u2581sentence\uff5c>")


def extract_answer_is(text: str | None) -> str | None:
    """The text after the last "the answer is", cut as MemAgent cuts it, or None when the phrase is absent.

    MemAgent (``taskutils/memory_eval/utils/__init__.py: extract_answer``): ``*`` removed everywhere first
    (markdown bold), the phrase matched case-sensitively (its prompt asks for "Therefore, the answer is
    ..."), everything after the last occurrence kept, surrounding spaces and periods stripped. The rest of
    the text stays in the answer; containment scoring (``sub_em``) tolerates that.
    """
    if not text:
        return None
    text = text.replace("*", "")
    if _ANSWER_IS not in text:
        return None
    answer = text.rsplit(_ANSWER_IS, 1)[-1].strip()
    for junk in _ANSWER_IS_JUNK:
        answer = answer.replace(junk, "")
    return answer.strip().strip(".").strip()


def parse_answer(text: str | None) -> tuple[str | None, str | None]:
    """``(answer, parser)`` for an evaluation response: parser ``"boxed"`` (the last complete ``\\boxed{}``,
    see :func:`extract_boxed`), else ``"answer_is"`` (:func:`extract_answer_is`), else ``(None, None)``.

    A reasoning model's text is read after its last ``</think>`` when anything follows it (MemAgent's
    ``extract_solution``). An empty box gives ``("", "boxed")``: a parser matched, the answer is empty and
    scores 0.
    """
    if not text:
        return None, None
    if _THINK_END in text:
        tail = text.rsplit(_THINK_END, 1)[-1].strip()
        if tail:
            text = tail
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed, "boxed"
    answer = extract_answer_is(text)
    if answer is not None:
        return answer, "answer_is"
    return None, None


def exact_match(prediction: str | None, gold: Gold) -> float:
    """1.0 if the normalized prediction equals a normalized gold alias."""
    if prediction is None:
        return 0.0
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in _golds(gold)))


def contains(prediction: str | None, gold: Gold) -> float:
    """1.0 if a (non-empty) normalized gold alias is contained in the normalized prediction (one direction
    only; any alias counts)."""
    if prediction is None:
        return 0.0
    pred = normalize_answer(prediction)
    return float(any((g := normalize_answer(alias)) and g in pred for alias in _golds(gold)))


sub_exact_match = contains  # the name this metric had before ``sub_em`` became MemAgent's


def sub_em(prediction: str | None, gold: Gold) -> float:
    """MemAgent's sub-EM, the "accuracy" of the paper's long-document HotpotQA table.

    As MemAgent's ``sub_exact_match_score`` (``taskutils/memory_eval/utils/__init__.py``) scores it in
    ``ruler_hqa.py``: only the first gold answer is scored; 1.0 when the normalized gold is a substring of the
    normalized prediction *or* the normalized prediction a substring of the gold; an empty (or missing)
    prediction scores 0. One deliberate difference: MemAgent checks emptiness before normalizing, so a
    prediction that normalizes to nothing ("." or "the") is a substring of every gold and scores 1 there;
    here it scores 0, as does an empty gold.
    """
    golds = _golds(gold)
    if not prediction or not golds:
        return 0.0
    pred, first = normalize_answer(prediction), normalize_answer(golds[0])
    if not pred or not first:
        return 0.0
    return float(first in pred or pred in first)


_YES_NO = ("yes", "no", "noanswer")


def token_f1(prediction: str | None, gold: Gold) -> float:
    """SQuAD token F1 between the normalized prediction and the best gold alias; as HotpotQA's official F1,
    0 when either side is yes / no / noanswer and the two differ."""
    if prediction is None:
        return 0.0
    pred = normalize_answer(prediction)
    pred_tokens = pred.split()
    best = 0.0
    for alias in _golds(gold):
        normalized = normalize_answer(alias)
        if (pred in _YES_NO or normalized in _YES_NO) and pred != normalized:
            continue
        gold_tokens = normalized.split()
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
    "sub_em": sub_em,
    "contains": contains,
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


def dense_reward(
    gold_logprob: float | None,
    target_logprob: float | None,
    weight: float = 0.0,
    recall_weight: float = 0.0,
) -> float:
    """The optional dense memory reward (an extension for small models, off in the paper's settings):
    ``weight·log p(gold | final memory) + recall_weight·log p(target | memory_k)``, each the mean per-token
    log-likelihood of the answer written in ``\\boxed{}``, teacher-forced. A term whose log-likelihood was not
    scored adds nothing."""
    total = 0.0
    if weight and gold_logprob is not None:
        total += weight * gold_logprob
    if recall_weight and target_logprob is not None:
        total += recall_weight * target_logprob
    return total


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
sub_em_reward = boxed_reward("sub_em")
contains_reward = boxed_reward("contains")
sub_exact_match_reward = contains_reward  # one-directional, as before ``sub_em`` became MemAgent's
f1_reward = boxed_reward("f1")
