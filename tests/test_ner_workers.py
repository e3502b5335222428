"""spaCy NER in worker processes (`workers: N`): batching never changes a passage's entities, and a build on
two workers writes what a build in one process writes, with NER in the workers and without importing Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from memtrain.corpus import open_corpus
from memtrain.errors import ConfigError
from memtrain.pipeline.config import PRESETS, CorpusConfig
from memtrain.pipeline.executors import make_executor
from memtrain.pipeline.ner import NerCache, ner_batches, recognise_texts

# A build with two local workers in a fresh interpreter, so that what it imports and whether this process
# ran NER itself can be seen: the worker pipeline's cache counts every use of spaCy in this process.
TWO_WORKER_BUILD = """
import json, sys
from memtrain.pipeline.build import build_corpus
from memtrain.pipeline.config import PRESETS, CorpusConfig
from memtrain.pipeline.ner import worker_pipeline
from memtrain.pipeline.progress import Reporter

class Counting(Reporter):
    ner = 0
    def advance(self, stage, n=1, total=None):
        if stage == "ner":
            Counting.ner += n

result = build_corpus(CorpusConfig(**{**PRESETS["tiny"], "workers": 2}), sys.argv[1], Counting())
info = worker_pipeline.cache_info()
print(json.dumps({
    "path": str(result.corpus.path),
    "ray_imported": "ray" in sys.modules,
    "ner_calls_here": info.hits + info.misses,
    "ner_progress": Counting.ner,
}))
"""


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("two-workers")
    done = subprocess.run(
        [sys.executable, "-c", TWO_WORKER_BUILD, str(out)], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def cached_entities(version: Path) -> dict:
    """What the NER cache beside corpus version folder `version` holds: passage id → (text sha1, entities)."""
    model = json.loads((version / "manifest.json").read_text())["config"]["ner_model"]
    return NerCache(version.parent / ".cache", model).entities


def test_ner_batches_keep_the_order_and_give_every_worker_a_share():
    ids = [f"p{i}" for i in range(10)]
    assert ner_batches(ids, slots=1, max_size=256) == [ids]
    assert ner_batches(ids, slots=2, max_size=256) == [ids[:5], ids[5:]]
    assert ner_batches(ids, slots=3, max_size=256) == [ids[:4], ids[4:8], ids[8:]]
    assert ner_batches(ids, slots=2, max_size=3) == [ids[:3], ids[3:6], ids[6:9], ids[9:]]
    assert ner_batches(ids[:1], slots=8, max_size=256) == [ids[:1]]
    assert ner_batches([], slots=2, max_size=256) == []


def test_a_passage_gets_the_same_entities_whatever_batch_it_is_in(tiny_corpus):
    passages = pq.read_table(tiny_corpus.passage_files()[0], columns=["text"])["text"].to_pylist()[:40]
    model = tiny_corpus.manifest["config"]["ner_model"]
    together = recognise_texts(model, passages, 256)
    alone = [recognise_texts(model, [text], 1)[0] for text in passages]
    cut = [
        e for batch in ner_batches(passages, slots=3, max_size=7) for e in recognise_texts(model, batch, 4)
    ]
    assert sum(map(len, together)) > 40  # real passages, real entities
    assert together == alone == cut


def test_two_local_workers_write_the_same_episodes_and_ner_cache_as_one_process(two_workers, tiny_corpus):
    again = open_corpus(two_workers["path"])
    assert again.manifest["build_id"] == tiny_corpus.manifest["build_id"]
    for a, b in zip(tiny_corpus.episode_files(), again.episode_files(), strict=True):
        assert a.read_bytes() == b.read_bytes()
    assert cached_entities(again.path) == cached_entities(tiny_corpus.path)


def test_with_two_workers_ner_runs_in_them_and_progress_counts_every_passage(two_workers):
    assert two_workers["ner_calls_here"] == 0  # the main process never touched spaCy
    assert two_workers["ner_progress"] == len(cached_entities(Path(two_workers["path"]))) > 100


def test_the_local_executor_never_imports_ray(two_workers):
    assert not two_workers["ray_imported"]


def test_ner_processes_is_still_accepted_with_a_deprecation_warning():
    with pytest.warns(FutureWarning, match="ner_processes is deprecated.*workers"):
        CorpusConfig(**PRESETS["tiny"], ner_processes=4)


def test_ner_cpus_per_worker_below_one_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="^ner_cpus_per_worker must be at least 1, got 0$"):
        CorpusConfig(ner_cpus_per_worker=0)


def test_forked_workers_see_the_environment_and_folder_their_pool_was_made_in(tmp_path, monkeypatch):
    # Workers are forked from a server process started with the first pool; a later pool's workers must still
    # start with the environment and working directory of the process as it is when that pool is made.
    with make_executor("local", 2, preload=("json",)) as first:
        assert first.submit(os.getpid).result() != os.getpid()
    monkeypatch.setenv("MEMTRAIN_TEST_MARK", "set after the first pool")
    monkeypatch.chdir(tmp_path)
    with make_executor("local", 2, preload=("json",)) as pool:
        assert pool.submit(os.getenv, "MEMTRAIN_TEST_MARK").result() == "set after the first pool"
        assert pool.submit(os.getcwd).result() == str(tmp_path)
