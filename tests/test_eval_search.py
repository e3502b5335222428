"""`memtrain eval search-qa` as a user runs it: SmolLM2-135M as the constant-memory search agent on real NQ
and HotpotQA questions (two per episode), searching the HotpotQA paragraphs through memtrain's retrieval
server on 127.0.0.1; the table, JSON and plot; a rerun generates nothing; `memtrain eval report` merges runs
in Table 2's layout; a run is named after the index searched, not the server's URL nor the HTTP settings.
(The in-process BM25 retriever drives `train --task search-qa`'s test.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from search_support import serving, write_search_data

from memtrain.errors import ConfigError
from memtrain.evals.searchqa import SearchQAEval, open_retriever, run_name
from memtrain.search import Retriever, make_server

# Small budgets keep CPU time down; the rest is MEM1's evaluation setting (greedy, top-3, constant context).
BUDGETS = ["-o", "response_tokens=32", "-o", "observation_tokens=100", "-o", "max_turns=2", "--limit", "4"]


def memtrain(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memtrain", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    """A FlashRAG-style data folder (nq/test.jsonl, hotpotqa.jsonl) and the HotpotQA paragraphs as a wiki-18
    JSONL collection."""
    root = tmp_path_factory.mktemp("search-data")
    return root, write_search_data(root, "nq/test.jsonl")


def search_args(out: Path, data: Path, *extra: str) -> list[str]:
    return ["eval", "search-qa", "--datasets", "nq,hotpotqa", "--data", str(data), "--out", str(out),
            *BUDGETS, *extra]  # fmt: skip


@pytest.fixture(scope="module")
def server_url(data):
    """memtrain's BM25 retrieval server over the collection, on 127.0.0.1 (Search-R1's API)."""
    with serving(make_server(Retriever.open(data[1]), host="127.0.0.1", port=0)) as url:
        yield url


@pytest.fixture(scope="module")
def search_run(tmp_path_factory, data, server_url):
    out = tmp_path_factory.mktemp("evals")
    result = memtrain(*search_args(out, data[0], "--retriever", server_url))
    assert result.returncode == 0, result.stderr
    (run,) = [p for p in out.iterdir() if (p / "config.json").exists()]
    return out, run, result


def test_eval_search_qa_writes_the_table_json_plot_and_items(search_run, data):
    _, run, result = search_run
    assert "HotpotQA" in result.stdout and "NQ" in result.stdout and "Avg" in result.stdout
    results = json.loads((run / "results.json").read_text())
    cells = {c["dataset"]: c for c in results["cells"]}
    assert cells["nq"]["n"] == cells["hotpotqa"]["n"] == 4  # --limit 4 two-objective episodes each
    for cell in cells.values():
        assert 0 <= cell["em"]["low"] <= cell["em"]["mean"] <= cell["em"]["high"] <= 100
        assert 1 <= cell["turns"] <= 2  # the turn cap
        assert len(cell["objective_em"]) == 2
    assert results["average"]["datasets"] == ["hotpotqa", "nq"]
    items = [json.loads(line) for line in (run / "items.jsonl").read_text().splitlines()]
    assert len(items) == 8
    for item in items:
        assert item["turns"] <= 2 and len(item["golden_answers"]) == 2
        assert all(a["kind"] in ("search", "answer", "invalid") for a in item["actions"])
    assert (run / "accuracy.png").stat().st_size > 10_000
    assert (run / "items.parquet").exists() and (run / "results.md").read_text().startswith("# ")
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "search-qa" and ".bm25." in run.name
    assert config["retriever"] == Retriever.open(data[1]).identity()  # the served index


def test_a_rerun_generates_nothing_and_changes_no_record(search_run, data, server_url):
    out, run, _ = search_run
    before = (run / "items.jsonl").read_bytes()
    settings = ["--retriever-timeout-s", "30", "--retriever-retries", "1"]  # runtime knobs: the same run
    result = memtrain(
        *search_args(out, data[0], "--retriever", server_url, "--datasets", "hotpotqa,nq", *settings)
    )
    assert result.returncode == 0, result.stderr
    assert "generated 0 new item(s) of 8" in result.stdout  # nor does the datasets' order make a new run
    assert (run / "items.jsonl").read_bytes() == before
    assert [p for p in out.iterdir() if (p / "config.json").exists()] == [run]


def test_eval_report_merges_search_runs_in_table_2s_layout(search_run, tmp_path):
    out, run, _ = search_run
    result = memtrain("eval", "report", str(out), "--out", str(tmp_path / "report"), "--paper", "qwen2.5")
    assert result.returncode == 0, result.stderr
    table = (tmp_path / "report" / "table2.md").read_text()
    header = "| model | TriviaQA | Bamboogle | HotpotQA | NQ | PopQA | 2Wiki | MuSiQue | Avg |"
    assert header in table
    assert "paper: Qwen2.5-7B-Instruct + MemTrain + MEM1" in table and "(2/7)" in table
    assert (tmp_path / "report" / "table2.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "report" / "table2.json").read_text())["rows"][0]["runs"] == [str(run)]


def test_bad_arguments_fail_in_one_line_before_any_model_loads(tmp_path, data):
    root, _ = data
    result = memtrain(*search_args(tmp_path, root))
    assert result.returncode != 0 and "--collection" in result.stderr
    result = memtrain(*search_args(tmp_path, root, "--retriever", "ftp://x"))
    assert result.returncode != 0 and "retriever 'ftp://x'" in result.stderr
    result = memtrain("eval", "search-qa", "--datasets", "squad", "--collection", str(root / "wiki.jsonl"))
    assert result.returncode != 0 and "unknown search-QA dataset 'squad'" in result.stderr
    result = memtrain(*search_args(tmp_path, root, "--retriever", "http://x", "--retriever-timeout-s", "0"))
    assert result.returncode != 0
    assert "retriever_timeout_s must be a positive number of seconds, not 0.0" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_a_run_is_named_after_the_index_searched_not_its_path_url_or_settings(data, server_url, tmp_path):
    root, collection = data

    def name(**spec) -> str:
        spec = SearchQAEval(datasets=["nq"], data=str(root), **spec)
        return run_name("m", spec.run, "0" * 64, open_retriever(spec)[1], spec.backend)

    served = name(retriever=server_url)
    copy = tmp_path / "copy" / "wiki.jsonl"
    copy.parent.mkdir()
    shutil.copyfile(collection, copy)
    lines = collection.read_text().splitlines(keepends=True)
    changed = tmp_path / "changed.jsonl"
    changed.write_text("".join(lines[:-1]) + lines[-1].replace("a", "e", 1))  # one letter of one passage
    same_server = make_server(Retriever.open(collection), host="127.0.0.1", port=0)
    other_server = make_server(Retriever.open(changed), host="127.0.0.1", port=0)
    with serving(same_server) as same, serving(other_server) as other:
        assert name(retriever=same + "/retrieve", retriever_timeout_s=5, retriever_retries=0) == served
        assert name(retriever="bm25", collection=str(copy)) == served  # the same index, in-process
        assert name(retriever=other) != served
        assert name(retriever="bm25", collection=str(changed)) == name(retriever=other)
    with pytest.raises(ConfigError, match="retriever_retries must be a whole number, 0 or more, not -1"):
        SearchQAEval(retriever=server_url, retriever_retries=-1)
