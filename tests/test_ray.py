"""build-corpus on Ray (`executor: ray`): a local Ray cluster stands in for a multi-node one."""

from __future__ import annotations

import pytest

from memtrain.pipeline.build import build_corpus
from memtrain.pipeline.config import PRESETS, CorpusConfig

ray = pytest.importorskip("ray", reason="the `ray` extra (make test installs it)")


@pytest.fixture
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_a_build_on_ray_writes_the_same_episodes_as_one_process(tiny_corpus, tmp_path, local_ray):
    config = CorpusConfig(**{**PRESETS["tiny"], "executor": "ray", "workers": 2})
    result = build_corpus(config, tmp_path)
    assert result.created and result.corpus.manifest["build_id"] == tiny_corpus.manifest["build_id"]
    for a, b in zip(tiny_corpus.episode_files(), result.corpus.episode_files(), strict=True):
        assert a.read_bytes() == b.read_bytes()
    for a, b in zip(tiny_corpus.passage_files(), result.corpus.passage_files(), strict=True):
        assert a.read_bytes() == b.read_bytes()
