"""build-corpus on Ray (`executor: ray`): a local Ray cluster stands in for a multi-node one."""

from __future__ import annotations

import os

import pytest

from memtrain.pipeline.build import build_corpus
from memtrain.pipeline.config import PRESETS, CorpusConfig
from memtrain.pipeline.ner import NerCache, worker_pipeline
from memtrain.pipeline.progress import Reporter

ray = pytest.importorskip("ray", reason="the `ray` extra (make test installs it)")


def dies_on_the_first_ner_batch(marker: str):
    """A Ray worker set-up hook: the first NER batch on the cluster ends its worker process (as a crash or a
    lost node would), once; `marker` records that it happened."""

    def install() -> None:
        import memtrain.pipeline.ner as ner

        recognise = ner.recognise_texts

        def once(*args, **kwargs):
            try:
                open(marker, "x").close()
            except FileExistsError:
                return recognise(*args, **kwargs)
            os._exit(1)

        ner.recognise_texts = once  # tasks look the function up by name, so they get this one

    return install


@pytest.fixture
def local_ray(tmp_path):
    marker = tmp_path / "a-ner-worker-died"
    hook = dies_on_the_first_ner_batch(str(marker))
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"worker_process_setup_hook": hook},
    )
    yield marker
    ray.shutdown()


class CountingReporter(Reporter):
    def __init__(self) -> None:
        self.ner = 0

    def advance(self, stage, n=1, total=None):
        self.ner += n if stage == "ner" else 0


def test_a_build_on_ray_writes_the_same_episodes_as_one_process_though_a_ner_worker_dies(
    tiny_corpus, tmp_path, local_ray
):
    config = CorpusConfig(**{**PRESETS["tiny"], "executor": "ray", "workers": 2})
    reporter, before = CountingReporter(), worker_pipeline.cache_info()
    result = build_corpus(config, tmp_path, reporter)
    assert local_ray.exists()  # a NER task lost its worker, and Ray ran it again
    assert worker_pipeline.cache_info() == before  # NER ran on the cluster, not in this process
    assert result.created and result.corpus.manifest["build_id"] == tiny_corpus.manifest["build_id"]
    for a, b in zip(tiny_corpus.episode_files(), result.corpus.episode_files(), strict=True):
        assert a.read_bytes() == b.read_bytes()
    for a, b in zip(tiny_corpus.passage_files(), result.corpus.passage_files(), strict=True):
        assert a.read_bytes() == b.read_bytes()
    # each recognised passage counted once, the retried batch included, and cached as one process caches it
    on_ray = NerCache(tmp_path / "enwiki" / ".cache", config.ner_model).entities
    assert reporter.ner == len(on_ray) > 100
    assert on_ray == NerCache(tiny_corpus.path.parent / ".cache", config.ner_model).entities
