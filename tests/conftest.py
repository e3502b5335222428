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
