"""Shared fixtures. Real assets come from memtrain's asset cache (fetched once with pip from PyPI)."""

from __future__ import annotations

import pytest

from memtrain import assets


@pytest.fixture(scope="session")
def enwiki_excerpt():
    """The real English Wikipedia dump excerpt (MediaWiki XML, bz2) shipped in the gensim wheel."""
    return assets.fetch("enwiki-excerpt")


@pytest.fixture(scope="session")
def spacy_model_path():
    return assets.fetch("en_core_web_sm")


@pytest.fixture(scope="session")
def smollm2_gguf():
    return assets.fetch("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tiny_corpus_config():
    from memtrain.pipeline.config import PRESETS, CorpusConfig

    return CorpusConfig(**PRESETS["tiny"])


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory, tiny_corpus_config, enwiki_excerpt):
    """A corpus built with the tiny preset on the real excerpt: `CorpusVersion` of OUT/enwiki/v1."""
    from memtrain.pipeline.build import build_corpus

    out = tmp_path_factory.mktemp("corpora")
    return build_corpus(tiny_corpus_config, out).corpus
