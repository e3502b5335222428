"""Scoring of ``memtrain eval`` per-item records: per-item scores, then one summary per length (``num_docs``).

Scoring never regenerates anything: it reads the records the harness appended (one per instance × sample,
see ``RUN/items.jsonl``), parses each ``response`` with :func:`memtrain.trainer.rewards.parse_answer` and
scores the answer with the metrics of :mod:`memtrain.trainer.rewards` (their one home):

* ``sub_em``: MemAgent's bidirectional containment on the first gold, the paper's "accuracy";
* ``em`` and ``f1``: max over the gold aliases (F1 is 0 on a yes/no mismatch).

A failed call, a response with no parsable answer and an empty answer all score 0 and stay in the
denominator (MemAgent drops failed calls, which inflates its figures); the summary counts each kind.

A length's summary averages each question's samples first, then takes the mean over questions, with a 95%
percentile bootstrap interval over questions (seeded, so the same items give the same interval). Per-item
scores are fractions (0 or 1, F1 in between); summaries are percentages, as in the paper's Table 1.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..trainer import rewards

SCORED_METRICS = ("sub_em", "em", "f1")
ACCURACY = "sub_em"  # what the paper's tables call accuracy
PARSERS = ("boxed", "answer_is", "none")
RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0
_BOOTSTRAP_BLOCK = 250  # resamples drawn at a time: memory stays ~block × questions whatever the count


def _golds(record: Mapping[str, Any]) -> list[str]:
    answers = record.get("answers")
    if isinstance(answers, str):
        return [answers]
    if answers is None:
        answer = record.get("answer")
        return [answer] if isinstance(answer, str) else []
    return [a for a in answers if isinstance(a, str)]


def score_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """One harness record → its scores: ``prediction``, ``parser`` (``"boxed"``, ``"answer_is"`` or
    ``"none"``), ``failed`` (the call failed or returned nothing), ``empty`` (the call answered, but no parser
    found an answer or the answer is empty) and ``sub_em`` / ``em`` / ``f1``, beside the record's identity and
    token fields."""
    response = record.get("response")
    failed = bool(record.get("failed")) or response is None
    prediction, parser = (None, None) if failed else rewards.parse_answer(response)
    empty = not failed and not (prediction and prediction.strip())
    golds = _golds(record)
    scores = {name: 0.0 for name in SCORED_METRICS}
    if not failed and not empty and golds:
        scores = {name: float(rewards.METRICS[name](prediction, golds)) for name in SCORED_METRICS}
    sample = int(record.get("sample") or 0)
    episode_id = str(record.get("episode_id", ""))
    return {
        "key": str(record.get("key") or f"{episode_id}#{sample}"),
        "episode_id": episode_id,
        "question_id": str(record.get("question_id") or episode_id.split("@", 1)[0]),
        "num_docs": int(record["num_docs"]),
        "sample": sample,
        "answers": golds,
        "prediction": prediction,
        "parser": parser or "none",
        "failed": failed,
        "error": record.get("error"),
        "empty": empty,
        **scores,
        "doc_tokens": int(record.get("doc_tokens") or 0),
        "cut_tokens": int(record.get("cut_tokens") or 0),
        "prompt_tokens": int(record.get("prompt_tokens") or 0),
        "completion_tokens": int(record.get("completion_tokens") or 0),
        "seconds": float(record.get("seconds") or 0.0),
    }


def score_records(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Score every record; a key seen twice (an item appended again by a resumed run) counts once, the later
    record winning. Sorted by (num_docs, question_id, sample)."""
    by_key: dict[str, dict[str, Any]] = {}
    for record in records:
        scored = score_record(record)
        by_key[scored["key"]] = scored
    return sorted(by_key.values(), key=lambda s: (s["num_docs"], s["question_id"], s["sample"]))


def bootstrap_interval(
    values: Sequence[float],
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (one value per question): `resamples` draws of
    len(values) values with replacement from ``numpy.random.default_rng(seed)``. One value gives a zero-width
    interval; none gives (nan, nan)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return float("nan"), float("nan")
    if data.size == 1 or resamples < 1:
        return float(data.mean()), float(data.mean())
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, _BOOTSTRAP_BLOCK):
        block = min(_BOOTSTRAP_BLOCK, resamples - start)
        means[start : start + block] = data[rng.integers(0, data.size, size=(block, data.size))].mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def stratified_interval(
    groups: Sequence[Sequence[float]],
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of the groups' means (an average over datasets): each
    resample draws every group's values with replacement within that group. Empty groups are left out."""
    groups = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not groups:
        return float("nan"), float("nan")
    if resamples < 1 or all(g.size == 1 for g in groups):
        mean = float(np.mean([g.mean() for g in groups]))
        return mean, mean
    rng = np.random.default_rng(seed)
    means = np.zeros(resamples)
    for data in groups:
        for start in range(0, resamples, _BOOTSTRAP_BLOCK):
            block = min(_BOOTSTRAP_BLOCK, resamples - start)
            draws = rng.integers(0, data.size, size=(block, data.size))
            means[start : start + block] += data[draws].mean(axis=1)
    means /= len(groups)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def per_question(scores: Iterable[Mapping[str, Any]], metric: str) -> dict[str, float]:
    """Each question's `metric` averaged over its samples (the unit the interval resamples)."""
    values: dict[str, list[float]] = defaultdict(list)
    for s in scores:
        values[s["question_id"]].append(float(s[metric]))
    return {qid: sum(v) / len(v) for qid, v in sorted(values.items())}


def metric_summary(
    question_values: Sequence[float],
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> dict[str, float | None]:
    """``{"mean", "low", "high"}`` in percent over per-question values (fractions); None when empty."""
    if not question_values:
        return {"mean": None, "low": None, "high": None}
    low, high = bootstrap_interval(question_values, resamples=resamples, confidence=confidence, seed=seed)
    return {"mean": 100 * float(np.mean(question_values)), "low": 100 * low, "high": 100 * high}


def summarize_cell(
    scores: Sequence[Mapping[str, Any]],
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> dict[str, Any]:
    """The summary of one length's scored items (all with the same ``num_docs``)."""
    if not scores:
        raise ValueError("summarize_cell needs at least one scored item")
    num_docs = {s["num_docs"] for s in scores}
    if len(num_docs) != 1:
        raise ValueError(f"summarize_cell got items of several lengths: {sorted(num_docs)}")
    metrics = {
        name: metric_summary(
            list(per_question(scores, name).values()), resamples=resamples, confidence=confidence, seed=seed
        )
        for name in SCORED_METRICS
    }
    samples = Counter(s["question_id"] for s in scores)
    parsers = Counter(s["parser"] for s in scores)
    doc_tokens = [s["doc_tokens"] for s in scores if s["doc_tokens"]]
    cut = [s for s in scores if s["cut_tokens"] > 0]
    completion = sum(s["completion_tokens"] for s in scores)
    seconds = sum(s["seconds"] for s in scores)
    return {
        "num_docs": scores[0]["num_docs"],
        "n": len(samples),  # questions: the unit of the mean and of the interval
        "n_items": len(scores),
        "samples_per_question": {"min": min(samples.values()), "max": max(samples.values())},
        "n_failed": sum(s["failed"] for s in scores),
        "n_no_answer": sum(s["empty"] and not s["failed"] for s in scores),
        "parsers": {name: parsers.get(name, 0) for name in PARSERS},
        "accuracy": metrics[ACCURACY],
        **metrics,
        "doc_tokens": {
            "mean": float(np.mean(doc_tokens)) if doc_tokens else None,
            "min": min(doc_tokens, default=None),
            "max": max(doc_tokens, default=None),
        },
        "cut": {
            "n_cut": len(cut),
            "mean_cut_tokens": float(np.mean([s["cut_tokens"] for s in cut])) if cut else 0.0,
            "max_cut_tokens": max((s["cut_tokens"] for s in cut), default=0),
            "mean_cut_fraction": (
                float(np.mean([s["cut_tokens"] / s["doc_tokens"] for s in cut if s["doc_tokens"]]))
                if any(s["doc_tokens"] for s in cut)
                else 0.0
            ),
        },
        "prompt_tokens": sum(s["prompt_tokens"] for s in scores),
        "completion_tokens": completion,
        "item_seconds": seconds,
        # the harness shares each batch's generation seconds out over its items, so this is the throughput
        "item_tokens_per_s": completion / seconds if seconds > 0 else None,
    }


def summarize_lengths(
    scores: Iterable[Mapping[str, Any]],
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> list[dict[str, Any]]:
    """One :func:`summarize_cell` per length, in increasing ``num_docs``."""
    cells: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for s in scores:
        cells[s["num_docs"]].append(s)
    return [
        summarize_cell(cells[n], resamples=resamples, confidence=confidence, seed=seed) for n in sorted(cells)
    ]


def average_over_lengths(
    scores: Iterable[Mapping[str, Any]],
    lengths: Sequence[int],
    metric: str = ACCURACY,
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> dict[str, Any]:
    """The mean over `lengths` of each length's `metric` (the paper's "avg" column), in percent.

    The interval resamples questions: each question's value is its mean over the lengths, which needs the same
    questions at every length (the benchmark's design); otherwise the interval is None.
    """
    by_length: dict[int, dict[str, float]] = {}
    scores = list(scores)
    for n in lengths:
        cell = [s for s in scores if s["num_docs"] == n]
        if cell:
            by_length[n] = per_question(cell, metric)
    if not by_length:
        return {"mean": None, "low": None, "high": None, "lengths": []}
    mean = 100 * float(np.mean([np.mean(list(q.values())) for q in by_length.values()]))
    question_sets = {frozenset(q) for q in by_length.values()}
    low = high = None
    if len(question_sets) == 1:
        qids = sorted(next(iter(question_sets)))
        paired = [float(np.mean([q[qid] for q in by_length.values()])) for qid in qids]
        lo, hi = bootstrap_interval(paired, resamples=resamples, confidence=confidence, seed=seed)
        low, high = 100 * lo, 100 * hi
    return {"mean": mean, "low": low, "high": high, "lengths": sorted(by_length)}
