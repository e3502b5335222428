"""`memtrain eval hotpotqa` and `memtrain eval report` as a user runs them: SmolLM2-135M on real HotpotQA dev
questions padded to N = 50 and 100 documents, resumed after kill -9, rerun, merged into the Table 1 layout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

DATA = Path(__file__).resolve().parents[2] / "shared/data/hotpotqa/hotpot_dev_distractor_v1.head40.json"
# Small budgets keep CPU time down (a 2-core CPU prefills SmolLM2 at ~300 tokens/s): 500-token chunks, a
# 320-token template-and-question budget; everything else is the paper's evaluation setting.
BUDGETS = [
    "-o", "problem_tokens=320", "-o", "chunk_tokens=500",
    "-o", "memory_tokens=32", "-o", "response_tokens=16",
]  # fmt: skip


def memtrain(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memtrain", *args], capture_output=True, text=True, **kw)


def eval_args(out: Path, questions: int, lengths: str, *extra: str, batch: int = 8) -> list[str]:
    return [
        "eval", "hotpotqa", "--data", str(DATA), "--out", str(out / "evals"),
        "--instances", str(out / "corpora"), "--questions", str(questions), "--lengths", lengths,
        *BUDGETS, "-o", f"batch_size={batch}", *extra,
    ]  # fmt: skip


def only_run(out: Path) -> Path:
    (run,) = [p for p in (out / "evals").iterdir() if (p / "config.json").exists()]
    return run


def records(run: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in (run / "items.jsonl").read_text().splitlines()]
    return {r["key"]: {k: v for k, v in r.items() if k != "seconds"} for r in rows}


# The 8 × {50, 100} run reads each document in one call cut to the call budget (`truncate`, ~870 tokens):
# the memory agent reading all 170k tokens would take minutes. The memory agent's own end-to-end run is the
# resume test's (N = 10).
FIXTURE = ["--method", "truncate"]


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    result = memtrain(*eval_args(out, 8, "50,100", *FIXTURE))
    assert result.returncode == 0, result.stderr
    return out, only_run(out), result


def test_eval_writes_the_table_json_plot_and_items(eval_run):
    _, run, result = eval_run
    assert "Traceback" not in result.stderr
    assert "accuracy [95% CI]" in result.stdout
    results = json.loads((run / "results.json").read_text())
    cells = {c["num_docs"]: c for c in results["cells"]}
    assert sorted(cells) == [50, 100]
    for n, cell in cells.items():
        assert cell["n"] == 8 and cell["n_items"] == 8
        assert 0 <= cell["accuracy"]["low"] <= cell["accuracy"]["mean"] <= cell["accuracy"]["high"] <= 100
        assert cell["doc_tokens"]["mean"] > 100 * n  # ~140 tokens per HotpotQA paragraph
    assert cells[100]["doc_tokens"]["mean"] > cells[50]["doc_tokens"]["mean"]
    assert results["tokens_per_s"] > 0
    assert results["config"]["method"] == "truncate"
    assert cells[50]["cut"]["n_cut"] == 8 and cells[100]["cut"]["mean_cut_tokens"] > 10_000
    assert (run / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "50" in (run / "results.md").read_text()
    items = pq.read_table(run / "items.parquet").to_pylist()
    assert len(items) == 16
    assert all(item["response"] is not None and item["cut_tokens"] > 0 for item in items)


def test_a_rerun_generates_nothing_and_changes_no_record(eval_run):
    out, run, _ = eval_run
    before = (run / "items.jsonl").read_bytes()
    result = memtrain(*eval_args(out, 8, "50,100", *FIXTURE))
    assert result.returncode == 0, result.stderr
    assert "generated 0 new item(s) of 16" in result.stdout
    assert (run / "items.jsonl").read_bytes() == before


def test_a_killed_run_resumes_to_the_records_of_an_uninterrupted_one(tmp_path):
    # The memory agent on 2 questions at N = 10 (~1.4k tokens: 3 or 4 chunks of 500) in two batches of 1:
    # small enough to run twice, once killed after its first batch.
    reference = memtrain(*eval_args(tmp_path / "uninterrupted", 2, "10", batch=1))
    assert reference.returncode == 0, reference.stderr
    killed = tmp_path / "killed"
    args = [sys.executable, "-m", "memtrain", *eval_args(killed, 2, "10", batch=1)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    items = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list((killed / "evals").glob("*/items.jsonl")) if (killed / "evals").exists() else []
        if found and found[0].read_text().count("\n") >= 1:  # the first batch is in
            items = found[0]
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert items is not None, "the run finished (or never started) before it could be killed"
    assert len(records(items.parent)) == 1
    resumed = memtrain(*eval_args(killed, 2, "10", batch=1))
    assert resumed.returncode == 0, resumed.stderr
    assert "generated 1 new item(s) of 2" in resumed.stdout
    expected = records(only_run(tmp_path / "uninterrupted"))
    assert items.parent.name == only_run(tmp_path / "uninterrupted").name  # same settings: same run name
    assert len(expected) == 2 and records(items.parent) == expected
    assert all(len(r["memories"]) == r["num_chunks"] >= 2 for r in expected.values())


def test_the_report_merges_runs_in_the_table1_layout_with_the_papers_rows(eval_run, tmp_path):
    _, run, _ = eval_run
    result = memtrain("eval", "report", str(run), "--paper", "qwen2.5", "--out", str(tmp_path / "report"))
    assert result.returncode == 0, result.stderr
    table = (tmp_path / "report" / "table1.md").read_text()
    for column in ("7k", "14k", "28k", "896k", "Avg"):
        assert column in table
    assert "Qwen2.5-7B-Instruct" in table and "smollm2-135m-instruct" in table
    assert (tmp_path / "report" / "table1.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--lengths", "50,400"], ["N=400", "391"]),
        (["--method", "rag"], ["rag", "memory-agent"]),
        (["--data", "/nonexistent/hotpot.json"], ["/nonexistent/hotpot.json"]),
        (["-o", "chunk_tokens=lots"], ["-o chunk_tokens=lots"]),
        (["--dtype", "bf16"], ["dtype 'bf16'", "bfloat16"]),
        (
            ["--dtype", "bfloat16", "--backend", "openai", "--base-url", "http://127.0.0.1:9"],
            ["unset --dtype"],
        ),
    ],
)
def test_bad_arguments_fail_in_one_line_before_any_model_loads(tmp_path, args, needles):
    base = eval_args(tmp_path, 2, "50")
    if args[0] == "--data":
        base[base.index("--data") + 1] = args[1]
        args = []
    result = memtrain(*base, *args)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "Loading weights" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr
