"""How build-corpus's memory grows with the collection (prints figures; not a test).

Collections of 1×, 4× and 16× the embedded Wikipedia excerpt (its cleaned articles repeated under new ids
and titles, as JSONL) are built with the same episode count, each in a fresh interpreter with one worker
(everything in one process). A sampler reads the process's resident memory every 20 ms and keeps, per
stage, the peak of

- anonymous memory (RssAnon): what the process itself holds — Python objects, arrays, the models;
- file-backed memory (RssFile): pages of memory-mapped files (the passage store, the BM25 index) and of
  libraries, which the kernel can drop at any time and read again.

Each size is then built a second time with another seed: its passages, store and index come from the
cache, so that build's episode stage shows what the episode stage itself holds (a fresh build's process
still carries the heap the index build grew). The growth per stage between the smallest and the largest
collection, per million passages, is what the full dump extrapolates from (docs/scaling.md).

    python bench/memory.py [--sizes 1,4,16] [--episodes 8] [--preset tiny] [--index-shard-passages N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

from fresh import in_fresh_interpreter

from memtrain import assets
from memtrain.pipeline.config import PRESETS, CorpusConfig


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class StageSampler(threading.Thread):
    """Peak RssAnon / RssFile of this process per stage (the stage the reporter last started)."""

    def __init__(self, every: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.every, self.stage = every, "setup"
        self.peaks: dict[str, dict[str, int]] = {}
        self.done = threading.Event()

    def sample(self) -> None:
        peak = self.peaks.setdefault(self.stage, {"anon": 0, "file": 0})
        peak["anon"] = max(peak["anon"], status_kib("RssAnon"))
        peak["file"] = max(peak["file"], status_kib("RssFile"))

    def run(self) -> None:
        while not self.done.wait(self.every):
            self.sample()


def make_source(copies: int, dest: Path) -> int:
    """The excerpt's cleaned articles `copies` times as JSONL; returns the article count."""
    from memtrain.pipeline import read
    from memtrain.pipeline.clean import clean_page

    articles = []
    for shard in read.plan_shards(str(assets.fetch("enwiki-excerpt"))):
        for page in read.read_shard(shard):
            article, _ = clean_page(page)
            if article is not None:
                articles.append(article)
    with open(dest, "w", encoding="utf-8") as f:
        for c in range(copies):
            for a in articles:
                suffix = "" if c == 0 else f" ({c + 1})"
                f.write(json.dumps({"id": f"{a.id}-{c}", "title": a.title + suffix, "text": a.text}) + "\n")
    return len(articles) * copies


def run_one(spec: dict) -> dict:
    """One build as `spec` says (source, episodes, preset, seed) into `spec["out"]`, in this process."""
    from memtrain.pipeline.build import build_corpus
    from memtrain.pipeline.progress import Reporter
    from memtrain.pipeline.retrieval import index_folder

    sampler = StageSampler()

    class StageReporter(Reporter):
        def start(self, stage, total=None, unit="items"):
            sampler.sample()
            sampler.stage = "ner+episodes" if stage in ("ner", "episodes") else stage

    overrides = {
        "num_episodes": spec["episodes"],
        "workers": 1,
        "source": spec["source"],
        "seed": spec["seed"],
        "index_shard_passages": spec["index_shard_passages"],
    }
    config = CorpusConfig(**{**PRESETS[spec["preset"]], **overrides})
    sampler.start()
    start = time.perf_counter()
    result = build_corpus(config, spec["out"], StageReporter())
    wall = time.perf_counter() - start
    sampler.done.set()
    sampler.sample()
    cache = next((Path(spec["out"]) / config.name / ".cache").glob("passages-*"))
    index = index_folder(cache, config.retriever, config.index_shard_passages)
    folders = {"store": cache / "store", "index": index}
    return {
        "wall_s": wall,
        "passages": result.summary["passages"],
        "peaks_kib": sampler.peaks,
        "disk_bytes": {
            k: sum(f.stat().st_size for f in v.rglob("*") if f.is_file()) for k, v in folders.items()
        },
        "related_qps": query_rate(config, folders["store"], folders["index"]),
    }


def query_rate(config: CorpusConfig, store_dir: Path, index_dir: Path, queries: int = 64) -> float:
    """Related-passage queries per second on the finished index (memory-mapped, one thread), for the first
    `queries` passages as pivots."""
    from memtrain.pipeline.retrieval import load_index
    from memtrain.pipeline.store import open_store

    store, retriever = open_store(store_dir), load_index(config.retriever, index_dir)
    pivots = list(range(min(queries, len(store))))
    start = time.perf_counter()
    retriever.related(pivots, [store.strings[p] for p in pivots], config.num_related)
    return len(pivots) / (time.perf_counter() - start)


def measure(spec: dict) -> dict:
    """`run_one(spec)` in a fresh interpreter, so each run's memory is its own."""
    return in_fresh_interpreter(__file__, spec)


def mib(kib: int) -> float:
    return kib / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1,4,16", help="copies of the excerpt, comma-separated")
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--preset", default="tiny", choices=list(PRESETS))
    parser.add_argument(
        "--index-shard-passages", type=int, default=0, help="BM25 index shards of N passages (0: one index)"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one build, JSON on stdout
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return

    assets.fetch("en_core_web_sm")
    rows = []
    for copies in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            source = Path(tmp) / f"excerpt-x{copies}.jsonl"
            make_source(copies, source)
            spec = {
                "source": str(source),
                "episodes": args.episodes,
                "preset": args.preset,
                "out": tmp,
                "index_shard_passages": args.index_shard_passages,
            }
            full = measure({**spec, "seed": 0})
            # other episodes from the same passages: store and index come from the cache, so this process's
            # episode stage holds nothing the index build left on its heap
            cached = measure({**spec, "seed": 1})
        rows.append((copies, full, cached))
        print(f"built {copies}x ({full['passages']:,} passages) in {full['wall_s']:.0f} s", flush=True)

    stages = [s for s in ("read", "store", "related", "ner+episodes") if s in rows[0][1]["peaks_kib"]]
    print("\npeak RssAnon / RssFile of the build process per stage, MiB (a fresh build; last column: the")
    print("episode stage of a build whose passages and index are cached)")
    header = " ".join(f"{s:>15}" for s in [*stages, "episodes cached"])
    print(f"{'copies':>6} {'passages':>9} {header} {'store MiB':>10} {'index MiB':>10} {'related q/s':>11}")
    for copies, full, cached in rows:
        peaks = [full["peaks_kib"][s] for s in stages] + [cached["peaks_kib"]["ner+episodes"]]
        cells = " ".join(f"{mib(p['anon']):>7.0f} /{mib(p['file']):>6.0f}" for p in peaks)
        disk = full["disk_bytes"]
        print(
            f"{copies:>6} {full['passages']:>9,} {cells} {disk['store'] / 2**20:>10.1f} "
            f"{disk['index'] / 2**20:>10.1f} {full['related_qps']:>11.1f}"
        )
    (c0, small, small_cached), (c1, large, large_cached) = rows[0], rows[-1]
    extra = (large["passages"] - small["passages"]) / 1e6
    print(f"\ngrowth from {c0}x to {c1}x, per million passages more (MiB):")
    pairs = [(s, small["peaks_kib"][s], large["peaks_kib"][s]) for s in stages]
    pairs.append(
        (
            "episodes cached",
            small_cached["peaks_kib"]["ner+episodes"],
            large_cached["peaks_kib"]["ner+episodes"],
        )
    )
    for name, a, b in pairs:
        print(
            f"  {name:<16} anonymous {mib(b['anon'] - a['anon']) / extra:>+8.0f}"
            f"   file-backed {mib(b['file'] - a['file']) / extra:>+8.0f}"
        )
    for name in ("store", "index"):
        per = (large["disk_bytes"][name] - small["disk_bytes"][name]) / 2**20 / extra
        print(f"  disk {name:<11} {per:>+8.0f} MiB per million passages")


if __name__ == "__main__":
    main()
