"""Shared fixtures. Real assets come from memtrain's asset cache (fetched once with pip from PyPI)."""

from __future__ import annotations

import bz2
import re

import pytest

from memtrain import assets

PAGES_PER_STREAM = 10
PAGE_BYTES = re.compile(rb"[ \t]*<page>.*?</page>\n", re.S)


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


@pytest.fixture(scope="session")
def excerpt_xml(enwiki_excerpt) -> bytes:
    return bz2.decompress(enwiki_excerpt.read_bytes())


@pytest.fixture(scope="session")
def multistream_dump(excerpt_xml, tmp_path_factory):
    """The excerpt re-packed as Wikimedia packs multistream dumps: a header stream (`<siteinfo>`), bz2
    streams of PAGES_PER_STREAM pages each, a closing stream, and the `offset:id:title` index beside it."""
    folder = tmp_path_factory.mktemp("multistream")
    pages = list(PAGE_BYTES.finditer(excerpt_xml))
    header, footer = excerpt_xml[: pages[0].start()], excerpt_xml[pages[-1].end() :]
    dump, index_lines = bytearray(bz2.compress(header)), []
    for i in range(0, len(pages), PAGES_PER_STREAM):
        offset = len(dump)
        group = [m.group() for m in pages[i : i + PAGES_PER_STREAM]]
        for page in group:
            page_id = re.search(rb"<id>(\d+)</id>", page).group(1).decode()
            title = re.search(rb"<title>(.*?)</title>", page).group(1).decode()
            index_lines.append(f"{offset}:{page_id}:{title}\n")
        dump += bz2.compress(b"".join(group))
    dump += bz2.compress(footer)
    path = folder / "enwiki-20160401-pages-articles-multistream.xml.bz2"
    path.write_bytes(bytes(dump))
    index = folder / "enwiki-20160401-pages-articles-multistream-index.txt.bz2"
    index.write_bytes(bz2.compress("".join(index_lines).encode()))
    return path
