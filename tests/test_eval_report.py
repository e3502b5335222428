"""`memtrain eval` reports: one run's results.json / results.md / PNG, and runs merged in Table 1's layout.

The run folders are written as the harness writes them: ``config.json`` and one ``items.jsonl`` record per
(instance, sample), for real HotpotQA dev questions padded with real pool paragraphs to N documents, their
document tokens counted with SmolLM2's tokenizer; the responses are typed here so every score is known.
"""

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from memtrain.errors import InputError, MemtrainError
from memtrain.evals import report
from memtrain.trainer.models import load_tokenizer

HOTPOT_DEV = Path(__file__).resolve().parents[2] / "shared/data/hotpotqa/hotpot_dev_distractor_v1.head40.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Responses per question (the first 8 dev questions) and sample, for the memory-agent run: N → [(s0, s1)].
# None is a failed call. Answers: yes, Chief of Protocol, Animorphs, no, Greenwich Village, New York City,
# YG Entertainment, Eenasul Fateh, 3,677 seated.
AGENT_RESPONSES = {
    50: [
        (r"\boxed{yes}", r"\boxed{no}"),  # sub_em 1, 0
        ("Therefore, the answer is Chief of Protocol.", "Therefore, the answer is **Chief of Protocol**"),
        (r"\boxed{The Animorphs series}", None),  # gold in prediction; a failed call
        (r"\boxed{No}", "I could not find it in my memory."),  # right; no parsable answer
        (
            r"\boxed{Greenwich Village}",
            r"\boxed{Greenwich Village}",
        ),  # prediction in gold: MemAgent counts it
        (r"\boxed{}", r"\boxed{}"),  # empty answers
        (r"\boxed{Eenasul Fateh}", r"\boxed{\text{Eenasul Fateh}}"),
        (r"\boxed{3,677}", r"\boxed{3677 seats}"),  # "3677" is in "3677 seated"; "3677 seats" is not
    ],
    100: [
        (r"\boxed{yes}", r"\boxed{Yes.}"),
        ("Therefore, the answer is Chief of Protocol", r"\boxed{Secretary of State}"),
        (None, None),
        (r"\boxed{yes}", r"\boxed{yes}"),
        (r"\boxed{Manhattan}", r"\boxed{Manhattan}"),
        (r"\boxed{YG Entertainment}", r"\boxed{YG Entertainment}"),
        (r"\boxed{Eenasul Fateh}", "No answer."),
        (r"\boxed{3,677 seated}", r"\boxed{3,677 seated}"),
    ],
}
AGENT_ACCURACY = {50: 100 * 5 / 8, 100: 100 * 4 / 8}  # per question: mean of its two samples
AGENT_EM = {50: 100 * 3 / 8, 100: 100 * 4 / 8}
# F1 at N=50, per question: (1+0)/2, 1, (2/3+0)/2, (1+0)/2, 4/7, 0, 1, (2/3 + 1/2)/2
AGENT_F1_50 = 100 * (0.5 + 1 + 1 / 3 + 0.5 + 4 / 7 + 0 + 1 + (2 / 3 + 0.5) / 2) / 8


@pytest.fixture(scope="module")
def dev() -> list[dict]:
    return json.loads(HOTPOT_DEV.read_text())


@pytest.fixture(scope="module")
def doc_tokens(dev) -> dict[tuple[str, int], int]:
    """SmolLM2 tokens of each of the first 8 questions' documents at N = 50 and 100: its own paragraphs and
    random others from the 40-question pool, shuffled, rendered as "Document i:" blocks."""
    tokenizer = load_tokenizer(None)
    pool = sorted({f"{title}\n{''.join(sentences)}" for q in dev for title, sentences in q["context"]})
    tokens = {}
    for q in dev[:8]:
        own = [f"{title}\n{''.join(sentences)}" for title, sentences in q["context"]]
        others = [d for d in pool if d not in own]
        for n in (50, 100):
            rng = random.Random(f"{q['_id']}@{n}")
            documents = own + rng.sample(others, n - len(own))
            rng.shuffle(documents)
            text = "\n\n".join(f"Document {i}:\n{d}" for i, d in enumerate(documents, start=1))
            tokens[q["_id"], n] = len(tokenizer(text)["input_ids"])
    return tokens


def _record(
    question: dict, num_docs: int, sample: int, response, doc_tokens: int, cut_tokens: int = 0
) -> dict:
    episode_id = f"{question['_id']}@{num_docs}"
    return {
        "key": f"{episode_id}#{sample}",
        "episode_id": episode_id,
        "question_id": question["_id"],
        "num_docs": num_docs,
        "sample": sample,
        "answers": [question["answer"]],
        "response": response,
        "failed": response is None,
        "error": "backend error: connection reset" if response is None else None,
        "memories": [],
        "num_chunks": 0,
        "doc_tokens": doc_tokens,
        "cut_tokens": cut_tokens,
        "prompt_tokens": doc_tokens - cut_tokens + 120,
        "completion_tokens": 0 if response is None else 40,
        "seconds": 1.5,
    }


@pytest.fixture()
def agent_run(tmp_path, dev, doc_tokens) -> Path:
    """A memory-agent run, 8 questions × N 50, 100 × 2 samples, its config as the issue's spec lays it out."""
    run = tmp_path / "runs" / "smollm2-135m-instruct.memory-agent.memtrain"
    run.mkdir(parents=True)
    config = {
        "task": "hotpotqa",
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "method": "memory-agent",
        "templates": "memtrain",
        "budgets": {"chunk_tokens": 5000, "memory_tokens": 1024, "response_tokens": 1024},
        "sampling": {"temperature": 0.7, "top_p": 0.95},
        "samples": 2,
        "data": {"name": "hotpotqa-dev-head40", "version": 1, "sha256": "0" * 64},
        "lengths": [50, 100],
        "questions": 8,
        "stats": {"completion_tokens": 1160, "wall_seconds": 29.0, "peak_rss_mib": 812.5},
    }
    (run / "config.json").write_text(json.dumps(config))
    lines = [
        json.dumps(_record(q, n, s, response, doc_tokens[q["_id"], n]))
        for n, responses in AGENT_RESPONSES.items()
        for q, pair in zip(dev, responses, strict=False)
        for s, response in enumerate(pair)
    ]
    (run / "items.jsonl").write_text("\n".join(lines) + "\n")
    return run


@pytest.fixture()
def full_context_run(tmp_path, dev, doc_tokens) -> Path:
    """A full-context run, one sample, its config as the harness writes it (settings under ``generation``),
    its items only in items.parquet; at N=100 each document is cut in the middle to an 8k window."""
    run = tmp_path / "runs" / "smollm2-135m-instruct.full-context.memtrain"
    run.mkdir(parents=True)
    config = {
        "task": "hotpotqa",
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "generation": {"method": "full-context", "templates": "memtrain", "temperature": 0.7, "top_p": 0.95},
        "data": {"name": "hotpotqa-dev-head40", "version": 1, "sha256": "0" * 64},
        "lengths": [50, 100],
        "questions": 8,
    }
    (run / "config.json").write_text(json.dumps(config))
    records = []
    for n, right in ((50, 6), (100, 3)):
        for i, q in enumerate(dev[:8]):
            tokens = doc_tokens[q["_id"], n]
            answer = q["answer"] if i < right else "Paris"
            cut = max(0, tokens - 8000) if n == 100 else 0
            records.append(_record(q, n, 0, rf"\boxed{{{answer}}}", tokens, cut))
    pq.write_table(pa.Table.from_pylist(records), run / "items.parquet")
    return run


def test_a_run_report_writes_results_json_md_and_a_plot_with_hand_computed_scores(agent_run, doc_tokens):
    files = report.write_report(agent_run, resamples=500)
    assert files.results_json == agent_run / "results.json"
    results = json.loads(files.results_json.read_text())
    assert results == json.loads(json.dumps(files.results, default=str))
    cells = {c["num_docs"]: c for c in results["cells"]}
    assert sorted(cells) == [50, 100]
    for n in (50, 100):
        cell = cells[n]
        assert cell["column"] == {50: "7k", 100: "14k"}[n]
        assert cell["n"] == 8 and cell["n_items"] == 16
        assert cell["accuracy"]["mean"] == pytest.approx(AGENT_ACCURACY[n])
        assert cell["sub_em"] == cell["accuracy"]
        assert cell["em"]["mean"] == pytest.approx(AGENT_EM[n])
        for metric in ("accuracy", "em", "f1"):
            assert cell[metric]["low"] <= cell[metric]["mean"] <= cell[metric]["high"]
        mean_tokens = sum(doc_tokens[q, m] for q, m in doc_tokens if m == n) / 8
        assert cell["doc_tokens"]["mean"] == pytest.approx(mean_tokens)
    assert cells[50]["f1"]["mean"] == pytest.approx(AGENT_F1_50)
    assert cells[50]["n_failed"] == 1 and cells[100]["n_failed"] == 2
    assert cells[50]["n_no_answer"] == 3 and cells[100]["n_no_answer"] == 1  # 2 empty boxes + 1 unparsed
    assert cells[50]["parsers"] == {"boxed": 12, "answer_is": 2, "none": 2}
    assert results["n_failed"] == 3 and results["n_items"] == 32
    assert results["average"]["lengths"] == [50, 100]
    assert results["average"]["sub_em"]["mean"] == pytest.approx((62.5 + 50.0) / 2)
    assert results["tokens_per_s"] == pytest.approx(1160 / 29.0)
    assert results["peak_memory"] == {"peak_rss_mib": 812.5}
    assert results["config"]["method"] == "memory-agent"

    markdown = files.results_md.read_text()
    assert "| 50 | 7k |" in markdown and "| 100 | 14k |" in markdown
    assert f"{AGENT_ACCURACY[50]:.1f} [" in markdown
    assert "| 12 / 2 / 2 |" in markdown
    scores = [json.loads(line) for line in files.scores.read_text().splitlines()]
    assert len(scores) == 32 and {s["parser"] for s in scores} == {"boxed", "answer_is", "none"}
    assert files.plot.read_bytes()[:8] == PNG_MAGIC


def test_rescoring_gives_the_same_results_and_intervals(agent_run, tmp_path):
    first = report.write_report(agent_run, tmp_path / "a", resamples=300, seed=5).results
    second = report.write_report(agent_run, tmp_path / "b", resamples=300, seed=5).results
    assert first["cells"] == second["cells"]
    assert (tmp_path / "a" / "results.md").read_text() == (tmp_path / "b" / "results.md").read_text()


def test_a_last_line_cut_by_a_kill_is_skipped_and_counted(agent_run):
    with open(agent_run / "items.jsonl", "a") as handle:
        handle.write('{"key": "5a8b57f25542995d1e6f1371@200#0", "num_docs": 200, "resp')
    results, _ = report.run_results(agent_run, resamples=100)
    assert results["torn_lines"] == 1 and results["n_items"] == 32
    # a damaged line in the middle is an error naming the file and the line
    lines = (agent_run / "items.jsonl").read_text().splitlines()
    (agent_run / "items.jsonl").write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    with pytest.raises(InputError, match=r"items\.jsonl: line 2 is not JSON"):
        report.load_run(agent_run)


def test_a_folder_without_a_run_is_refused_with_what_is_missing(tmp_path):
    with pytest.raises(InputError, match="no config.json"):
        report.load_run(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(InputError, match="nothing has been evaluated"):
        report.load_run(tmp_path)


def test_a_full_context_run_reports_how_many_documents_were_cut_and_by_how_much(full_context_run, doc_tokens):
    files = report.write_report(full_context_run, resamples=200)
    cells = {c["num_docs"]: c for c in files.results["cells"]}
    assert files.results["method"] == "full-context"
    assert cells[50]["accuracy"]["mean"] == pytest.approx(75.0) and cells[100]["accuracy"]["mean"] == 37.5
    cuts = [doc_tokens[q, 100] - 8000 for q, n in doc_tokens if n == 100 and doc_tokens[q, 100] > 8000]
    assert cells[50]["cut"]["n_cut"] == 0
    assert cells[100]["cut"]["n_cut"] == len(cuts) > 0
    assert cells[100]["cut"]["max_cut_tokens"] == max(cuts)
    assert f"{len(cuts)} (mean" in files.results_md.read_text()


def test_two_runs_merge_into_the_papers_table_1_layout_beside_its_published_rows(
    agent_run, full_context_run, tmp_path
):
    qwen = report.paper_rows("qwen2.5")
    assert [r.label for r in qwen] == [
        "Qwen2.5-7B-Instruct",
        "Qwen2.5-7B-Instruct + MemTrain",
        "Qwen2.5-7B-Instruct + MemAgent",
        "Qwen2.5-7B-Instruct + MemTrain + MemAgent",
    ]
    files = report.merge_runs(
        [agent_run, full_context_run], tmp_path / "table", paper_rows=qwen, resamples=300
    )
    table = json.loads(files.table_json.read_text())
    labels = [c["label"] for c in table["columns"]]
    assert labels == ["7k", "14k", "28k", "56k", "112k", "224k", "448k", "896k"]
    assert [c["num_docs"] for c in table["columns"]] == [50, 100, 200, 400, 800, 1600, 3200, 6400]
    rows = {r["label"]: r for r in table["rows"]}
    agent = rows["HuggingFaceTB/SmolLM2-135M-Instruct · memory-agent"]
    full = rows["HuggingFaceTB/SmolLM2-135M-Instruct · full-context"]
    assert agent["cells"]["7k"]["mean"] == pytest.approx(62.5) and agent["cells"]["14k"]["mean"] == 50.0
    assert agent["cells"]["28k"] is None
    assert agent["avg"]["mean"] == pytest.approx(56.25) and agent["avg"]["columns"] == 2
    assert full["cells"]["7k"]["mean"] == 75.0 and full["cells"]["14k"]["mean"] == 37.5
    best = rows["paper: Qwen2.5-7B-Instruct + MemTrain + MemAgent"]
    assert best["cells"]["896k"]["mean"] == 68.75 and best["avg"]["mean"] == 73.53
    assert "2606.03197" in table["paper_source"]

    markdown = files.table_md.read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| model"))
    assert header.endswith("| 448k (N=3200) | 896k (N=6400) | Avg |")
    agent_line = next(
        line for line in markdown.splitlines() if line.startswith("| HuggingFaceTB") and "agent" in line
    )
    assert agent_line.count("| – ") == 6  # 28k … 896k not evaluated
    assert "62.5 [" in agent_line and agent_line.endswith("(2/8) |")
    assert "| paper: Qwen2.5-7B-Instruct + MemTrain + MemAgent | 76.56 | 79.69 |" in markdown
    assert "| 8 (1) | 8 (2) |" in markdown  # questions scored (failed calls) of the agent run
    assert files.plot.read_bytes()[:8] == PNG_MAGIC


def test_the_same_length_of_the_same_run_twice_is_refused(agent_run, tmp_path):
    with pytest.raises(MemtrainError, match="both evaluate .* at N=50"):
        report.merge_runs([agent_run, agent_run], tmp_path / "table")


def test_the_papers_rows_are_table_1_with_its_averages():
    assert len(report.PAPER_TABLE1) == 8
    for row in report.PAPER_TABLE1:
        assert len(row.values) == len(report.TABLE1_LENGTHS)
        assert sum(row.values) / len(row.values) == pytest.approx(row.avg, abs=0.006)
    assert [report.column_label(n) for n in report.TABLE1_LENGTHS] == [
        "7k",
        "14k",
        "28k",
        "56k",
        "112k",
        "224k",
        "448k",
        "896k",
    ]
    assert report.column_label(12800) == "1.8M"
    assert report.format_tokens(7340) == "7.3k"
