"""The related-passage index: one bm25s index or shards of it, built resumably and opened memory-mapped."""

from __future__ import annotations

import pytest

from memtrain.pipeline.build import build_corpus
from memtrain.pipeline.config import PRESETS, CorpusConfig
from memtrain.pipeline.retrieval import ShardedBM25, build_index, load_index
from memtrain.pipeline.store import open_store


@pytest.fixture(scope="module")
def store(tiny_corpus):
    (cache,) = (tiny_corpus.path.parent / ".cache").glob("passages-*")
    return open_store(cache / "store")


PIVOTS = list(range(0, 4400, 220))


def related(folder, store, k=5):
    return load_index("bm25", folder).related(PIVOTS, [store.strings[p] for p in PIVOTS], k)


def test_one_shard_is_the_single_index(store, tmp_path):
    n = len(store)
    build_index("bm25", store.strings.iter_range, n, tmp_path / "one")
    build_index("bm25", store.strings.iter_range, n, tmp_path / "sharded", shard_passages=n)
    assert isinstance(load_index("bm25", tmp_path / "sharded"), ShardedBM25)
    assert related(tmp_path / "one", store) == related(tmp_path / "sharded", store)


def test_shards_answer_from_the_whole_collection(store, tmp_path):
    n = len(store)
    build_index("bm25", store.strings.iter_range, n, tmp_path / "one")
    build_index("bm25", store.strings.iter_range, n, tmp_path / "s1500", shard_passages=1500)
    sharded = load_index("bm25", tmp_path / "s1500")
    assert sharded.starts == [0, 1500, 3000] and sharded.num_docs == n
    single, split = related(tmp_path / "one", store), related(tmp_path / "s1500", store)
    for pivot, row in zip(PIVOTS, split, strict=True):
        assert len(row) == 5 == len(set(row)) and pivot not in row and all(0 <= i < n for i in row)
    assert {i // 1500 for row in split for i in row} == {0, 1, 2}  # hits come from every shard
    # Each shard scores with its own statistics, so rankings move a little, not much.
    overlap = sum(len(set(a) & set(b)) for a, b in zip(single, split, strict=True)) / (5 * len(PIVOTS))
    assert overlap >= 0.6, overlap


def test_an_interrupted_sharded_build_keeps_its_finished_shards(store, tmp_path):
    n, folder = len(store), tmp_path / "index"

    def stop_after_two(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_index("bm25", store.strings.iter_range, n, folder, 1000, on_shard=stop_after_two)
    partial = tmp_path / "index.partial"
    assert not folder.exists() and sorted(p.name for p in partial.iterdir()) == ["shard-00000", "shard-00001"]
    first = (partial / "shard-00000").stat().st_mtime_ns
    seen: list[int] = []
    build_index("bm25", store.strings.iter_range, n, folder, 1000, on_shard=lambda d, t: seen.append(d))
    assert seen == [1, 2, 3, 4, 5] and not partial.exists()
    assert (folder / "shard-00000").stat().st_mtime_ns == first  # not built again
    build_index("bm25", store.strings.iter_range, n, tmp_path / "fresh", 1000)
    assert related(folder, store) == related(tmp_path / "fresh", store)


def test_a_sharded_build_is_another_version_with_the_same_shape(tiny_corpus, tmp_path):
    result = build_corpus(CorpusConfig(**{**PRESETS["tiny"], "index_shard_passages": 1500}), tmp_path)
    assert result.created and result.summary["episodes"] == tiny_corpus.manifest["summary"]["episodes"]
    assert result.corpus.manifest["build_id"] != tiny_corpus.manifest["build_id"]
    (cache,) = (tmp_path / "enwiki" / ".cache").glob("passages-*")
    index = cache / "index-bm25-s1500"
    assert sorted(p.name for p in index.glob("shard-*")) == ["shard-00000", "shard-00001", "shard-00002"]
    assert not (cache / "index-bm25").exists()
