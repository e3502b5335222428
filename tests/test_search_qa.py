"""Search-QA data and scoring: real NQ questions composed into two-objective episodes, hand-checked scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memtrain.errors import ConfigError, InputError, MemtrainError
from memtrain.evals import scoring, search_report
from memtrain.search import qa
from memtrain.search.agent import response_answers

NQ = Path(__file__).resolve().parents[2] / "shared" / "data" / "nq" / "test.head.jsonl"


@pytest.fixture(scope="module")
def questions() -> list[qa.Question]:
    return qa.load_questions(NQ, "nq")


def test_nq_questions_compose_into_two_objective_episodes_as_mem1_does(questions):
    raw = [json.loads(line) for line in NQ.read_text().splitlines() if line.strip()]
    assert len(questions) == len(raw) == 17
    episodes = qa.compose(questions)
    assert len(episodes) == 8  # consecutive pairs; the 17th question is dropped
    first = episodes[0]
    assert first["questions"] == [raw[0]["question"] + "?", raw[1]["question"] + "?"]
    assert first["problem"] == "; ".join(first["questions"])
    assert first["golden_answers"] == [raw[0]["golden_answers"], raw[1]["golden_answers"]]
    assert first["dataset"] == "nq" and first["objectives"] == 2
    assert len({e["episode_id"] for e in episodes}) == 8
    assert [e["golden_answers"][0] for e in episodes[1:]] == [
        raw[2 * i]["golden_answers"] for i in range(1, 8)
    ]
    assert qa.compose(questions, 3)[-1]["questions"][-1].startswith(raw[14]["question"])  # 5 triples
    assert len(qa.compose(questions, limit=3)) == 3


def test_a_seeded_sample_is_reproducible_and_a_larger_limit_keeps_the_smaller_one(questions):
    a = qa.select_episodes(questions, 2, 3, sample_seed=7)
    b = qa.select_episodes(questions, 2, 5, sample_seed=7)
    assert [e["episode_id"] for e in b[:3]] == [e["episode_id"] for e in a]
    assert [e["episode_id"] for e in a] != [
        e["episode_id"] for e in qa.select_episodes(questions, 2, 3, None)
    ]


def test_answers_are_scored_by_position_against_every_alias():
    golds = [["Wilhelm Conrad Röntgen"], ["Olivia", "MFSK"]]
    assert response_answers("<think>s</think><answer> Wilhelm Conrad Röntgen ;mfsk </answer>") == [
        "Wilhelm Conrad Röntgen",
        "mfsk",
    ]
    assert qa.objective_scores(["wilhelm conrad röntgen", "The MFSK."], golds) == [1.0, 1.0]
    assert qa.objective_scores(["MFSK", "Wilhelm Conrad Röntgen"], golds) == [0.0, 0.0]  # swapped
    assert qa.episode_score(["Wilhelm Conrad Röntgen", "AM"], golds) == 0.5
    # a wrong number of answers, or none, scores 0 on every objective
    assert qa.objective_scores(["Wilhelm Conrad Röntgen"], golds) == [0.0, 0.0]
    assert qa.objective_scores(["Wilhelm Conrad Röntgen", "Olivia", "x"], golds) == [0.0, 0.0]
    assert qa.objective_scores(None, golds) == [0.0, 0.0]
    assert response_answers("<think>s</think><search>who</search> <answer>a; b</answer>") is None  # a search
    assert response_answers("<answer>a; b</answer> then <answer>c; d</answer>") == ["a", "b"]  # the action


def test_a_record_is_scored_and_classified_as_a_user_would_read_it():
    golds = [["May 18, 2018"], ["Cyrus"]]
    base = {"episode_id": "nq:a+b", "dataset": "nq", "sample": 0, "golden_answers": golds}
    right = search_report.score_record(
        {**base, "response": "<think>.</think><answer>may 18 2018; Cyrus</answer>"}
    )
    assert right["em"] == 1.0 and right["objective_em"] == [1.0, 1.0]
    half = search_report.score_record({**base, "response": "<answer>May 18, 2018; Miley</answer>"})
    assert half["em"] == 0.5 and not half["wrong_count"]
    short = search_report.score_record({**base, "response": "<answer>May 18, 2018</answer>"})
    assert short["em"] == 0.0 and short["wrong_count"]
    silent = search_report.score_record({**base, "response": "<think>still searching</think>"})
    assert silent["em"] == 0.0 and silent["no_answer"] and not silent["failed"]
    failed = search_report.score_record({**base, "response": "", "failed": True})
    assert failed["em"] == 0.0 and failed["failed"] and not failed["no_answer"]


def test_the_average_over_datasets_resamples_within_each_dataset():
    scores = [{"dataset": "nq", "question_id": f"q{i}", "em": float(i < 3)} for i in range(4)] + [
        {"dataset": "hotpotqa", "question_id": f"h{i}", "em": float(i == 0)} for i in range(4)
    ]
    avg = search_report.average(scores, resamples=500, confidence=0.95, seed=0)
    assert avg["mean"] == pytest.approx(100 * (0.75 + 0.25) / 2)
    assert avg["low"] < avg["mean"] < avg["high"]
    assert avg["datasets"] == ["hotpotqa", "nq"]  # the paper's column order
    assert scoring.stratified_interval([[1.0], [0.0]]) == (0.5, 0.5)


def test_dataset_names_and_sources_are_resolved_or_refused_in_one_line(tmp_path):
    assert qa.parse_datasets("NQ, 2wiki,nq") == ["nq", "2wikimultihopqa"]
    with pytest.raises(ConfigError, match="unknown search-QA dataset 'squad'"):
        qa.parse_datasets("squad")
    (tmp_path / "nq").mkdir()
    (tmp_path / "nq" / "test.jsonl").write_text(NQ.read_text())
    (tmp_path / "popqa.jsonl").write_text(NQ.read_text())
    assert qa.question_source(str(tmp_path), "nq", ["nq", "popqa"]) == str(tmp_path / "nq" / "test.jsonl")
    assert qa.question_source(str(tmp_path), "popqa", ["nq", "popqa"]) == str(tmp_path / "popqa.jsonl")
    with pytest.raises(InputError, match="has no questions for musique"):
        qa.question_source(str(tmp_path), "musique", ["musique"])
    with pytest.raises(InputError, match="one file holds one dataset"):
        qa.question_source(str(NQ), "nq", ["nq", "popqa"])
    assert qa.question_source("RUC-NLPIR/FlashRAG_datasets", "nq", ["nq"]) == "RUC-NLPIR/FlashRAG_datasets"
    # a split is taken from the dataset's folder or refused; training never falls back to the test set
    (tmp_path / "nq" / "train.jsonl").write_text(NQ.read_text())
    assert qa.question_source(str(tmp_path), "nq", ["nq"], "train") == str(tmp_path / "nq" / "train.jsonl")
    with pytest.raises(InputError, match="has no nq questions: expected a dev"):
        qa.question_source(str(tmp_path), "nq", ["nq"], "dev")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "x", "golden_answers": ["a"]}', "record 2: needs a non-empty string 'question'"),
        ('{"id": "x", "question": "who?", "golden_answers": []}', "record 2: needs 'golden_answers'"),
        ("[1, 2]", "record 2 is not an object"),
    ],
)
def test_a_bad_question_record_is_one_error_naming_the_file_and_the_record(tmp_path, line, message):
    path = tmp_path / "nq.jsonl"
    path.write_text(NQ.read_text().splitlines()[0] + "\n" + line + "\n")
    with pytest.raises(InputError, match=message) as info:
        qa.load_questions(path, "nq")
    assert str(path) in str(info.value)


def test_the_hub_loader_reads_a_repository_laid_out_as_flashrags(tmp_path, monkeypatch):
    """The Hub code path (`datasets` configs named after benchmarks, split test → dev → train) on a local copy
    of FlashRAG_datasets' layout: a README declaring each benchmark's files, as the Hub repository does."""
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    repo = tmp_path / "FlashRAG_datasets"
    lines = NQ.read_text().splitlines()
    (repo / "nq").mkdir(parents=True)
    (repo / "nq" / "test.jsonl").write_text("\n".join(lines[:10]) + "\n")
    (repo / "nq" / "train.jsonl").write_text("\n".join(lines[10:]) + "\n")
    (repo / "README.md").write_text(
        "---\nconfigs:\n- config_name: nq\n  data_files:\n"
        "  - split: train\n    path: nq/train.jsonl\n  - split: test\n    path: nq/test.jsonl\n---\n"
    )
    test = qa.load_hub(str(repo), "nq")  # no split asked for: test comes first
    assert test == qa.load_questions(NQ, "nq")[:10]
    assert test[0].golden_answers == tuple(json.loads(lines[0])["golden_answers"])
    assert len(qa.load_hub(str(repo), "nq", split="train")) == 7
    with pytest.raises(MemtrainError, match="cannot list the splits of 'popqa'"):
        qa.load_hub(str(repo), "popqa")
    assert any((tmp_path / "cache").iterdir())  # the datasets cache of this test, not the user's
