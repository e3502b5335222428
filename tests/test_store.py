"""The out-of-core passage store returns exactly the passages of the read stage's Parquet shards."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from memtrain.pipeline.passages import passage_text
from memtrain.pipeline.retrieval import BM25Retriever, tokenize_stream
from memtrain.pipeline.store import MARKER, TOKENS, open_store, passage_store, separator_tokens
from memtrain.pipeline.tokens import load_tokenizer


@pytest.fixture(scope="module")
def built(tiny_corpus):
    """(passage shards, store folder) of the tiny corpus's build."""
    (cache,) = (tiny_corpus.path.parent / ".cache").glob("passages-*")
    return sorted(cache.glob("shard-*.parquet")), cache / "store"


def test_store_returns_the_in_memory_tables_passages(built, tiny_corpus_config):
    shards, folder = built
    table = pa.concat_tables([pq.read_table(s) for s in shards])
    store = open_store(folder)
    assert len(store) == table.num_rows > 1000
    ids = table["passage_id"].to_pylist()
    titles, texts = table["title"].to_pylist(), table["text"].to_pylist()
    documents = [passage_text(t, x) for t, x in zip(titles, texts, strict=True)]
    assert list(store.ids) == ids  # iteration, chunk by chunk
    rows = [0, 1, 1999, 2000, 2001, len(ids) // 2, len(ids) - 1]
    assert [store.strings[i] for i in rows] == [documents[i] for i in rows]  # lookups across chunk edges
    assert [store.ids[np.int64(i)] for i in rows] == [ids[i] for i in rows]
    assert store.strings[-1] == documents[-1] and store.ids[2:5] == ids[2:5]
    assert list(store.strings.iter_range(1990, 4010)) == documents[1990:4010]  # across two chunk edges
    assert list(store.strings.iter_range(0, len(ids) + 5)) == documents
    with pytest.raises(IndexError):
        store.strings[len(ids)]
    assert np.array_equal(store.num_tokens, table["num_tokens"].to_numpy())
    assert isinstance(store.num_tokens, np.memmap)  # mapped, not read into memory
    sub = store.subset([3, 2500])  # what a masking task receives
    assert sub.strings == {3: documents[3], 2500: documents[2500]}
    tokenizer = load_tokenizer(tiny_corpus_config.tokenizer)
    assert store.separator_tokens == separator_tokens(tokenizer) >= 1


def test_store_is_reused_and_rewritten_when_damaged(built, tiny_corpus_config, tmp_path):
    shards, finished = built
    tokenizer = load_tokenizer(tiny_corpus_config.tokenizer)
    folder = tmp_path / "store"
    logs: list[str] = []
    first = passage_store(shards, folder, tokenizer, logs.append)
    tokens = np.array(first.num_tokens)  # a copy: the mapping would see the damage below
    marker = (folder / MARKER).stat().st_mtime_ns
    assert passage_store(shards, folder, tokenizer, logs.append).strings[7] == first.strings[7]
    assert (folder / MARKER).stat().st_mtime_ns == marker and logs == []  # reused as is
    assert (folder / "documents.arrow").read_bytes() == (finished / "documents.arrow").read_bytes()

    with open(folder / TOKENS, "r+b") as f:  # a flipped byte at the end of the token counts
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 0xFF]))
    store = passage_store(shards, folder, tokenizer, logs.append)
    assert len(logs) == 1 and "num_tokens.npy differs" in logs[0] and "writing it again" in logs[0]
    assert np.array_equal(store.num_tokens, tokens)

    record = json.loads((folder / MARKER).read_text())
    record["shards"][0] = "0" * 64  # as if the read stage had produced other passages
    (folder / MARKER).write_text(json.dumps(record))
    passage_store(shards, folder, tokenizer, logs.append)
    assert "the passage shards changed" in logs[-1]
    assert not list(tmp_path.glob(".store.*"))  # no temporary folder left behind


def test_streamed_tokenization_gives_the_same_index(built):
    _, folder = built
    store = open_store(folder)
    texts = list(store.strings)[:3000]
    whole, streamed = BM25Retriever(), BM25Retriever()
    ids = whole.tokenizer.tokenize(texts, update_vocab=True, return_as="ids", show_progress=False)
    assert [list(a) for a in tokenize_stream(streamed.tokenizer, texts, batch_size=7)] == ids
    whole.index(texts)
    streamed.index(iter(texts))  # any iterable: the store's strings are read chunk by chunk
    queries = [0, 10, 2999]
    assert whole.related(queries, [texts[q] for q in queries], 5) == streamed.related(
        queries, [texts[q] for q in queries], 5
    )
