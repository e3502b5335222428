"""Records that flow between stages and the Parquet schemas of what a build writes.

A corpus version folder looks like::

    OUT/<name>/v<N>/
        manifest.json          config, source + sha256, counts, stage times, schema + package versions
        stats.json             per-stage counters and timings
        episodes/episodes-00000-of-00002.parquet …
        passages/passages-00000-of-00004.parquet …

Offsets are Python string indices (code points) into the episode's masked ``text``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

SCHEMA_VERSION = 1
MASK = "[MASK]"
TARGET = "[TARGET]"


@dataclass(slots=True)
class Page:
    """One page as read from the source, before cleaning."""

    id: str
    title: str
    text: str
    ns: int = 0
    redirect: bool = False
    markup: str = "wikitext"  # "wikitext" (dumps) or "plain" (HF wikipedia layout, JSONL)


@dataclass(slots=True)
class Article:
    """A cleaned main-namespace article: plain text, sections kept, markup gone."""

    id: str
    title: str
    text: str


PASSAGE_SCHEMA = pa.schema(
    [
        pa.field("passage_id", pa.string(), nullable=False),  # "<article id>#<position>"
        pa.field("article_id", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("position", pa.int32(), nullable=False),  # index of the passage within its article
        pa.field("text", pa.string(), nullable=False),
        pa.field("num_words", pa.int32(), nullable=False),
        pa.field("num_tokens", pa.int32(), nullable=False),  # of the passage as it appears in a document
    ]
)

ENTITY_TYPE = pa.struct(
    [
        pa.field("start", pa.int32()),
        pa.field("end", pa.int32()),
        pa.field("label", pa.string()),
        pa.field("text", pa.string()),
        pa.field("passage", pa.int32()),  # index into passage_ids
    ]
)

CHUNK_TYPE = pa.struct(
    [
        pa.field("start", pa.int32()),
        pa.field("end", pa.int32()),
        pa.field("num_tokens", pa.int32()),
    ]
)

EPISODE_SCHEMA = pa.schema(
    [
        pa.field("episode_id", pa.string(), nullable=False),
        pa.field(
            "index", pa.int64(), nullable=False
        ),  # episode number; its randomness is seeded by (seed, index)
        pa.field("pivot_id", pa.string(), nullable=False),
        pa.field("passage_ids", pa.list_(pa.string()), nullable=False),  # in document order
        pa.field("passage_roles", pa.list_(pa.string()), nullable=False),  # "pivot" | "related" | "random"
        pa.field("passage_starts", pa.list_(pa.int32()), nullable=False),  # offset of each passage in text
        pa.field("text", pa.string(), nullable=False),  # the masked document
        pa.field("answer", pa.string(), nullable=False),  # the masked entity's surface form
        pa.field("answer_label", pa.string(), nullable=False),  # spaCy label, e.g. GPE, DATE
        pa.field("num_masks", pa.int32(), nullable=False),
        pa.field("num_tokens", pa.int32(), nullable=False),  # under `tokenizer`
        pa.field("tokenizer", pa.string(), nullable=False),
        pa.field("chunk_size", pa.int32(), nullable=False),
        pa.field("chunks", pa.list_(CHUNK_TYPE), nullable=False),  # <= chunk_size tokens (memtrain.chunks)
        pa.field("entities", pa.list_(ENTITY_TYPE), nullable=False),  # NER spans in text ([MASK]s excluded)
    ]
)
