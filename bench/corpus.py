"""Corpus build throughput on the embedded Wikipedia excerpt (prints figures; not a test).

In one run, on the same text:
- raw spaCy NER: `nlp.pipe` over the passages the build recognised, words/s;
- the whole `build_corpus` (read → clean → passages → BM25 → NER → episodes → write), words/s over the
  same words, and its ratio to raw NER (goal ≥ 0.8: NER should be the only real cost);
- extraction alone (read + clean), articles/s and words/s;
- peak RSS of this process and its children.

    python bench/corpus.py [--episodes 200] [--preset paper] [--workers 0]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import pyarrow.parquet as pq

from memtrain import assets
from memtrain.pipeline import read
from memtrain.pipeline.build import build_corpus
from memtrain.pipeline.clean import clean_page
from memtrain.pipeline.config import PRESETS, CorpusConfig
from memtrain.pipeline.ner import load_ner
from memtrain.pipeline.passages import passage_text


def peak_rss_mib() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--preset", default="paper", choices=list(PRESETS))
    parser.add_argument(
        "--workers", type=int, default=None, help="build workers, NER included (default: preset's)"
    )
    args = parser.parse_args()

    source = assets.fetch("enwiki-excerpt")
    assets.fetch("en_core_web_sm")

    start = time.perf_counter()
    articles = words = 0
    for shard in read.plan_shards(source):
        for page in read.read_shard(shard):
            article, _ = clean_page(page)
            if article is not None:
                articles += 1
                words += len(article.text.split())
    extract_s = time.perf_counter() - start

    config = CorpusConfig(
        **{**PRESETS[args.preset], "num_episodes": args.episodes}
        | ({"workers": args.workers} if args.workers is not None else {})
    )
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = build_corpus(config, out)
        build_s = time.perf_counter() - start
        summary = result.summary
        ner_words = summary["ner_words"]
        # the passages the build ran NER on: every passage of every episode
        used = set()
        for ep in result.corpus.iter_episodes(["passage_ids"]):
            used.update(ep["passage_ids"])
        table = pq.ParquetDataset([str(f) for f in result.corpus.passage_files()]).read()
        texts = [
            passage_text(t, x)
            for pid, t, x in zip(
                *(table[c].to_pylist() for c in ("passage_id", "title", "text")), strict=True
            )
            if pid in used
        ]

    nlp = load_ner(config.ner_model)
    start = time.perf_counter()
    raw_words = 0
    for doc in nlp.pipe(texts, batch_size=config.ner_batch_size):
        raw_words += len(doc.text.split())
    raw_s = time.perf_counter() - start

    raw_rate = raw_words / raw_s
    build_rate = ner_words / build_s
    print(f"episodes built                 {summary['episodes']:>12,}  ({args.preset} preset)")
    print(f"passages recognised (NER)      {len(texts):>12,}  ({raw_words:,} words)")
    print(f"raw spaCy nlp.pipe NER         {raw_rate:>12,.0f} words/s")
    print(f"whole build-corpus             {build_rate:>12,.0f} words/s  ({build_s:.1f} s)")
    print(f"ratio build / raw NER          {build_rate / raw_rate:>12.2f}  (goal ≥ 0.80)")
    extract_rate = f"{articles / extract_s:>12,.1f} articles/s  ({words / extract_s:,.0f} words/s)"
    print(f"extraction (read + clean)      {extract_rate}")
    for stage, seconds in summary["seconds"].items():
        print(f"  stage {stage:<24}{seconds:>10.1f} s")
    print(f"peak RSS                       {peak_rss_mib():>12,.0f} MiB  (goal < 2048)")


if __name__ == "__main__":
    main()
