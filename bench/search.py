"""Search QA's costs: the retriever (index build, memory, queries/s in-process and over HTTP) and the batched
search agent against a per-episode loop on the same episodes.

Passages: the 392 real HotpotQA dev paragraphs, repeated `--repeats` times under distinct ids (so the index
grows as a larger collection's would; the vocabulary does not). Queries: the first sentence of each supporting
paragraph. Episodes: the real NQ questions composed two at a time, SmolLM2-135M-Instruct as the agent, greedy;
past the 8 disjoint pairs of the 16 questions, question i is paired with i + 3, i + 5, … (distinct episodes,
so the batch can be as large as an evaluation's).

    .venv/bin/python bench/search.py [--repeats 1,32] [--episodes 16] [--max-turns 2] [--response-tokens 48]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
HOTPOT = SHARED / "hotpotqa" / "hotpot_dev_distractor_v1.head40.json"
NQ = SHARED / "nq" / "test.head.jsonl"

BUILD = """
import json, resource, sys, time
from memtrain.search import Retriever
start = time.perf_counter()
retriever = Retriever.open(sys.argv[1])
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "passages": retriever.num_passages}))
"""


def write_collection(path: Path, repeats: int) -> tuple[Path, list[str]]:
    from memtrain.search import render_contents

    records = json.loads(HOTPOT.read_text())
    paragraphs = [(t, "".join(s)) for r in records for t, s in r["context"]]
    with path.open("w") as f:
        n = 0
        for _ in range(repeats):
            for title, text in paragraphs:
                f.write(json.dumps({"id": str(n), "contents": render_contents(title, text)}) + "\n")
                n += 1
    queries = []
    for r in records:
        context = dict((t, s) for t, s in r["context"])
        queries += [context[t][0] for t, _ in r["supporting_facts"] if t in context and context[t]]
    return path, queries


def queries_per_second(search, queries: list[str], per_call: int, rounds: int = 3) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        for i in range(0, len(queries), per_call):
            search(queries[i : i + per_call], 3)
    return rounds * len(queries) / (time.perf_counter() - start)


def bench_retriever(repeats: list[int], tmp: Path) -> None:
    from memtrain.search import HTTPRetriever, Retriever, make_server

    print(
        "retriever: BM25 (bm25s), HotpotQA paragraphs repeated; queries: first sentences of supporting ones"
    )
    print(
        f"{'passages':>9} {'build s':>8} {'build MiB':>9} {'index MB':>9} {'in-proc q/s (80/1)':>19} "
        f"{'HTTP q/s (16/1)':>16} {'µs/passage':>10}"
    )
    for k in repeats:
        path, queries = write_collection(tmp / f"wiki-{k}.jsonl", k)
        built = json.loads(
            subprocess.run(
                [sys.executable, "-c", BUILD, str(path)], capture_output=True, text=True, check=True
            ).stdout
        )
        retriever = Retriever.open(path)
        size = sum(f.stat().st_size for f in retriever.index_dir.iterdir()) / 1e6
        batch, single = (queries_per_second(retriever.search, queries, n) for n in (80, 1))
        server = make_server(retriever, host="127.0.0.1", port=0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        client = HTTPRetriever(f"http://127.0.0.1:{server.server_address[1]}")
        http_batch, http_single = (queries_per_second(client.search, queries, n, 1) for n in (16, 1))
        server.shutdown()
        per = 1e6 * built["seconds"] / built["passages"]
        print(
            f"{built['passages']:>9,} {built['seconds']:>8.2f} {built['peak_mib']:>9.0f} {size:>9.1f} "
            f"{batch:>9.0f} / {single:<7.0f} {http_batch:>7.0f} / {http_single:<6.0f} {per:>10.1f}"
        )
    print("per million passages: build time and index size scale with the µs/passage and MB columns' slope")


def bench_episodes(qa, questions: list, count: int) -> list[dict]:
    """`count` distinct two-question episodes: MEM1's disjoint pairs first, then question i with i + 3, i + 5,
    … (mod the number of questions)."""
    episodes = qa.compose(questions)
    n, shift = len(questions), 3
    while len(episodes) < count and shift < n:
        episodes += qa.compose([q for i in range(n) for q in (questions[i], questions[(i + shift) % n])])
        shift += 2
    return episodes[:count]


def bench_agent(episodes: int, max_turns: int, response_tokens: int, collection: Path) -> None:
    import torch
    from prefill import Recorded, bound_line, prefill_line, prefill_seconds

    from memtrain.search import Retriever, qa
    from memtrain.search.agent import SearchAgentConfig, rollout
    from memtrain.trainer.backends import load_backend

    torch.set_num_threads(2)
    backend = load_backend("transformers", None, device="cpu")
    retriever = Retriever.open(collection)
    chosen = bench_episodes(qa, qa.load_questions(NQ, "nq"), episodes)
    config = SearchAgentConfig(max_turns=max_turns, response_tokens=response_tokens, observation_tokens=256)
    rollout(chosen[:1], backend, SearchAgentConfig(max_turns=1, response_tokens=4), retriever)  # warm-up

    together, recorded = Recorded(backend), Recorded(backend)

    def timed(groups: list[list[dict]], engine) -> tuple[float, int]:
        start, tokens = time.perf_counter(), 0
        for group in groups:
            for trajectory in rollout(group, engine, config, retriever, seed=0):
                tokens += sum(len(t.generation.completion_ids) for t in trajectory.turns)
        return time.perf_counter() - start, tokens

    batched, batched_tokens = timed([chosen], together)
    single, single_tokens = timed([[e] for e in chosen], recorded)
    prefill = prefill_seconds(backend, recorded.prompts)
    print(
        f"\nsearch agent: SmolLM2-135M-Instruct, {len(chosen)} NQ episodes (2 questions each), "
        f"max_turns {max_turns}, response_tokens {response_tokens}, greedy, CPU, 2 torch threads"
    )
    print(
        f"  batched (every episode in one call a turn): {batched:.1f} s, {batched_tokens / batched:.1f} tok/s"
    )
    print(f"  per-episode loop:                           {single:.1f} s, {single_tokens / single:.1f} tok/s")
    print(f"  speed-up: {single / batched:.2f}x episodes/s (goal 4x)")
    print(f"  prefill: {prefill_line(prefill, single, recorded, together, 'prompts')}")
    print(f"  predicted: {bound_line(backend, recorded, together, prefill, len(chosen))}")
    print(f"  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", default="1,32,128", help="collection sizes, as repeats of the 392 passages"
    )
    parser.add_argument("--episodes", type=int, default=16, help="episodes (default: memtrain's eval batch)")
    parser.add_argument("--max-turns", type=int, default=2)
    parser.add_argument("--response-tokens", type=int, default=48)
    parser.add_argument("--skip-agent", action="store_true")
    parser.add_argument("--skip-retriever", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.skip_retriever:
            bench_retriever([int(k) for k in args.repeats.split(",")], tmp)
        if not args.skip_agent:
            collection, _ = write_collection(tmp / "agent-wiki.jsonl", 1)
            bench_agent(args.episodes, args.max_turns, args.response_tokens, collection)


if __name__ == "__main__":
    main()
