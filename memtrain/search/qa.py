"""Search-QA questions: the seven benchmarks in FlashRAG/Search-R1 form, composed into k-objective episodes.

A question record is ``{"id", "question", "golden_answers": [...]}`` (JSON Lines, a JSON list or Parquet,
FlashRAG's and Search-R1's form). :func:`load_questions` reads a local file or the Hub
(``RUC-NLPIR/FlashRAG_datasets``, one config per benchmark; the split falls back test → dev → train, as
MEM1 and FlashRAG do).

:func:`compose` makes MEM1's multi-objective episodes: consecutive questions of one benchmark, grouped
``objectives`` at a time (a remainder is dropped), each ending in "?", joined with "; ". The agent answers
``<answer>a1; a2</answer>`` (read by ``memtrain.search.agent.response_answers``); :func:`objective_scores`
scores each answer against its question's gold aliases by position (exact match after SQuAD normalization,
``memtrain.trainer.rewards.exact_match``); a missing answer or a wrong number of answers scores 0 on every
objective. An episode's score is the mean over its
objectives (the paper's Table 2 figure).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..corpus import file_sha256, short_reason
from ..errors import ConfigError, InputError, MemtrainError
from ..trainer.rewards import exact_match

HUB_ID = "RUC-NLPIR/FlashRAG_datasets"
SPLITS = ("test", "dev", "train")  # the first one a benchmark has is evaluated
FILE_SUFFIXES = (".jsonl", ".json", ".parquet")

# The benchmarks in the paper's Table 2 order: name (the FlashRAG config) → column label.
DATASETS: dict[str, str] = {
    "triviaqa": "TriviaQA",
    "bamboogle": "Bamboogle",
    "hotpotqa": "HotpotQA",
    "nq": "NQ",
    "popqa": "PopQA",
    "2wikimultihopqa": "2Wiki",
    "musique": "MuSiQue",
}
ALIASES = {"2wiki": "2wikimultihopqa", "trivia": "triviaqa", "natural_questions": "nq"}
TRAIN_DATASETS = ("nq", "hotpotqa")  # MEM1's (and the paper's) post-training mixture
OBJECTIVES = 2


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    golden_answers: tuple[str, ...]
    dataset: str


def dataset_name(name: str) -> str:
    """The canonical benchmark name of `name` (case and a few aliases forgiven); a ConfigError otherwise."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in DATASETS:
        raise ConfigError(f"unknown search-QA dataset {name!r}; known: {', '.join(DATASETS)}")
    return key


def parse_datasets(value: str | Sequence[str]) -> list[str]:
    """``"nq,hotpotqa"`` or a list → canonical names, in the order given, without repeats."""
    names = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for name in names:
        if name.strip() and (canonical := dataset_name(name)) not in out:
            out.append(canonical)
    if not out:
        raise ConfigError("datasets: give at least one of " + ", ".join(DATASETS))
    return out


def _golds(value: Any) -> list[str] | None:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) and hasattr(value, "tolist"):  # numpy arrays from Parquet
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        return None
    golds = [str(g) for g in value if isinstance(g, (str, int, float)) and str(g).strip()]
    return golds or None


def questions_from_records(
    records: Iterable[tuple[int, Any]], source: str | os.PathLike, dataset: str
) -> list[Question]:
    """Validated questions of `records` — ``(number, record)`` — naming `source` and the record on error."""
    questions = []
    for n, record in records:
        where = f"record {n + 1}"
        if not isinstance(record, dict):
            raise InputError(source, f"{where} is not an object with 'question' and 'golden_answers'")
        question = record.get("question")
        if not isinstance(question, str) or not question.strip():
            raise InputError(source, f"{where}: needs a non-empty string 'question'")
        golds = _golds(record.get("golden_answers", record.get("answers", record.get("answer"))))
        if golds is None:
            raise InputError(source, f"{where}: needs 'golden_answers', a non-empty list of strings")
        qid = str(record.get("id", f"{dataset}_{n}"))
        questions.append(Question(qid, " ".join(question.split()), tuple(golds), dataset))
    if not questions:
        raise InputError(source, "no questions")
    return questions


def load_questions(
    source: str | os.PathLike | None, dataset: str, *, split: str | None = None, revision: str | None = None
) -> list[Question]:
    """The questions of `dataset` from a local file (`source`), or from the Hub id `source` (default
    ``RUC-NLPIR/FlashRAG_datasets``) with the benchmark's config, `split` or the first of test, dev, train."""
    from ..tasks.hotpotqa import iter_records, looks_like_path

    dataset = dataset_name(dataset)
    if source is not None:
        path = Path(source)
        if path.is_dir():
            raise InputError(path, "is a folder; give a JSONL, JSON or Parquet file of questions or a Hub id")
        if path.exists():
            return questions_from_records(iter_records(path), path, dataset)
        if looks_like_path(str(source)):
            raise InputError(path, "no such file")
    return load_hub(str(source or HUB_ID), dataset, split=split, revision=revision)


def load_hub(
    hub_id: str, dataset: str, *, split: str | None = None, revision: str | None = None
) -> list[Question]:
    """A benchmark's questions from a Hub dataset laid out as FlashRAG's (config = benchmark name)."""
    import datasets

    try:
        splits = (
            [split] if split else list(datasets.get_dataset_split_names(hub_id, dataset, revision=revision))
        )
    except Exception as exc:  # network, missing config, not found: datasets raises many kinds
        raise MemtrainError(f"{hub_id}: cannot list the splits of {dataset!r}: {short_reason(exc)}") from None
    chosen = split or next((s for s in SPLITS if s in splits), splits[0] if splits else None)
    if chosen is None:
        raise MemtrainError(f"{hub_id}: {dataset!r} has no split")
    try:
        rows = datasets.load_dataset(hub_id, dataset, split=chosen, revision=revision)
    except Exception as exc:
        raise MemtrainError(
            f"{hub_id}: cannot load {dataset!r} split {chosen!r}: {short_reason(exc)}"
        ) from None
    return questions_from_records(enumerate(rows), f"{hub_id} [{dataset}/{chosen}]", dataset)


def _as_question(text: str) -> str:
    text = text.strip()
    return text if text.endswith("?") else text + "?"


def compose(
    questions: Sequence[Question], objectives: int = OBJECTIVES, *, limit: int | None = None
) -> list[dict[str, Any]]:
    """MEM1's k-objective episodes of one benchmark: questions ``[0..k)``, ``[k..2k)``, … (a remainder
    dropped), at most `limit` episodes. Each episode is a row the search agent and the evaluation read."""
    if objectives < 1:
        raise ConfigError(f"objectives must be at least 1, got {objectives}")
    episodes = []
    for start in range(0, len(questions) - objectives + 1, objectives):
        if limit is not None and len(episodes) >= limit:
            break
        group = questions[start : start + objectives]
        golds = [list(q.golden_answers) for q in group]
        episodes.append(
            {
                "episode_id": f"{group[0].dataset}:" + "+".join(q.id for q in group),
                "question_id": f"{group[0].dataset}:" + "+".join(q.id for q in group),
                "dataset": group[0].dataset,
                "objectives": objectives,
                "questions": [_as_question(q.question) for q in group],
                "problem": "; ".join(_as_question(q.question) for q in group),
                "golden_answers": golds,
                "answer": "; ".join(g[0] for g in golds),  # one readable gold (the first alias of each)
            }
        )
    return episodes


def split_answers(content: str) -> list[str]:
    """The answers inside one ``<answer>…</answer>``: split on ";", each stripped."""
    return [part.strip() for part in content.split(";")]


def objective_scores(answers: Sequence[str] | None, golden_answers: Sequence[Sequence[str]]) -> list[float]:
    """Exact match of each answer against its objective's gold aliases, by position; every objective scores 0
    when there is no answer or the number of answers is not the number of objectives."""
    if answers is None or len(answers) != len(golden_answers):
        return [0.0] * len(golden_answers)
    return [exact_match(a, list(golds)) for a, golds in zip(answers, golden_answers, strict=True)]


def episode_score(answers: Sequence[str] | None, golden_answers: Sequence[Sequence[str]]) -> float:
    """The mean of :func:`objective_scores`: the episode's exact match averaged over its objectives."""
    scores = objective_scores(answers, golden_answers)
    return sum(scores) / len(scores) if scores else 0.0


def question_source(
    data: str | None, dataset: str, datasets: Sequence[str], split: str | None = None
) -> str | None:
    """The file or Hub id `dataset`'s questions come from. In a folder: ``<dataset>/<split>*`` (FlashRAG's
    layout; with no `split`, the first of test, dev, train), else ``<dataset>.jsonl`` (.json, .parquet); a
    `split` that the dataset's folder lacks is refused, never replaced by another. A file serves one dataset;
    anything else is a Hub id (None: FlashRAG's)."""
    if data is None:
        return None
    path = Path(data)
    if path.is_dir():
        folder = path / dataset
        if folder.is_dir():
            for name in [split] if split else SPLITS:
                found = sorted(p for p in folder.glob(f"{name}*") if p.suffix.lower() in FILE_SUFFIXES)
                if found:
                    return str(found[0])
            wanted = f"a {split}* file" if split else "a test*, dev* or train* file"
            raise InputError(
                folder, f"has no {dataset} questions: expected {wanted} (.jsonl, .json, .parquet)"
            )
        for suffix in FILE_SUFFIXES:
            if (path / f"{dataset}{suffix}").is_file():
                return str(path / f"{dataset}{suffix}")
        raise InputError(
            path, f"has no questions for {dataset}: expected {dataset}.jsonl or {dataset}/test.jsonl inside"
        )
    if path.is_file() and len(datasets) > 1:
        raise InputError(
            path, f"one file holds one dataset, but {len(datasets)} were asked for; give a folder"
        )
    return data


def source_identity(source: str | None, dataset: str, split: str | None) -> dict[str, Any]:
    """What the questions of one dataset depend on: a file's sha256, or the Hub id and split."""
    if source is not None and Path(source).is_file():
        return {"dataset": dataset, "file": str(Path(source).resolve()), "sha256": file_sha256(Path(source))}
    return {"dataset": dataset, "hub": source or HUB_ID, "split": split}


def select_episodes(
    questions: Sequence[Question], objectives: int, limit: int | None, sample_seed: int | None
) -> list[dict[str, Any]]:
    """The episodes evaluated: MEM1's composition of the questions in order, shuffled with `sample_seed`
    when given, the first `limit`. A larger limit keeps every episode a smaller one chose."""
    episodes = compose(questions, objectives)
    if sample_seed is not None:
        random.Random(sample_seed).shuffle(episodes)
    return episodes[:limit] if limit is not None else episodes
