"""Hub dataset cards: render `data_cards/*.md.j2` for a corpus version into a `README.md` with YAML metadata.

The card's statistics are `inspect.summary.summarize` (the numbers `memtrain inspect-episodes` prints) and its
schema is read from the shards themselves, so neither can drift from the data.
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass
from pathlib import Path

import duckdb
import jinja2
import pyarrow.parquet as pq
import yaml

from .corpus import CorpusVersion
from .errors import InputError, MemtrainError
from .inspect.render import get_episode
from .inspect.summary import Summary, number, share, summarize
from .inspect.views import first_row, open_views, translate_errors
from .io import atomic_path
from .pipeline.schema import MASK

TEMPLATES = Path(__file__).resolve().parent / "data_cards"
DEFAULT_TEMPLATE = TEMPLATES / "episodes.md.j2"
CARD_NAME = "README.md"
EXAMPLE_CHARS = 1500
TAGS = ["memtrain", "memory-agent", "long-context", "masked-entity", "wikipedia", "reinforcement-learning"]

COLUMN_DESCRIPTIONS = {
    "episode_id": "Stable id of the episode, `ep-<index>`.",
    "index": "Episode number; all of its randomness comes from the generator seeded by `(seed, index)`.",
    "pivot_id": "Passage id (`<article id>#<position>`) of the pivot passage the answer was taken from.",
    "passage_ids": "Ids of the document's passages, in document order.",
    "passage_roles": "Role of each passage, aligned with `passage_ids`: `pivot`, `related` (retrieved) "
    "or `random`.",
    "passage_starts": "Offset in `text` where each passage (its title line, then its text) starts.",
    "text": "The masked document: the passages joined by a blank line, every occurrence of the answer "
    "replaced by `[MASK]`.",
    "answer": "The masked entity's surface form: what the agent must name.",
    "answer_label": "spaCy entity label of the answer, e.g. `GPE`, `DATE`, `CARDINAL`.",
    "num_masks": "How many `[MASK]` placeholders `text` contains.",
    "num_tokens": "Length of `text` in tokens of `tokenizer`.",
    "tokenizer": "Tokenizer that counted tokens and cut chunks.",
    "chunk_size": "Chunk size in tokens.",
    "chunks": "Chunk boundaries: `start`/`end` offsets in `text` and `num_tokens` of each chunk, "
    "in reading order.",
    "entities": "spaCy entity spans in `text` (`start`, `end`, `label`, `text`, index of their `passage`); "
    "spans overlapping a `[MASK]` are left out.",
}


# What the default template reads from the manifest; a manifest lacking any of it is blamed, not the template.
CARD_MANIFEST_FIELDS = ("memtrain_version", "created_at", "config")
CARD_CONFIG_FIELDS = (
    "num_related",
    "num_random",
    "passage_words",
    "retriever",
    "min_tokens",
    "max_tokens",
    "tokenizer",
    "ner_model",
    "min_mask_occurrences",
    "chunk_size",
)


def check_card_manifest(corpus: CorpusVersion, default_template: bool = True) -> None:
    """Raise an error naming the manifest when a field the card is made of is missing (those the default
    template reads) or of the wrong type."""
    manifest = corpus.manifest
    missing = [f for f in CARD_MANIFEST_FIELDS if manifest.get(f) is None] if default_template else []
    config = manifest.get("config")
    if config is not None and not isinstance(config, dict):
        raise InputError(
            corpus.manifest_path, "field 'config' is not an object; the card needs the build config"
        )
    if default_template and isinstance(config, dict):
        missing += [f"config.{f}" for f in CARD_CONFIG_FIELDS if config.get(f) is None]
    if missing:
        raise InputError(
            corpus.manifest_path,
            f"missing field(s) {', '.join(missing)} that the card needs "
            "(was it written by memtrain build-corpus? rebuilding the corpus writes a complete one)",
        )
    for key, kind in (("source", dict), ("summary", dict)):
        if manifest.get(key) is not None and not isinstance(manifest[key], kind):
            raise InputError(corpus.manifest_path, f"field {key!r} is not an object")
    source = manifest.get("source") or {}
    files = source.get("files")
    if files is not None and not (isinstance(files, list) and all(isinstance(f, dict) for f in files)):
        raise InputError(corpus.manifest_path, "field 'source.files' is not a list of objects")
    rejections = (manifest.get("summary") or {}).get("rejections")
    if rejections is not None and not isinstance(rejections, dict):
        raise InputError(corpus.manifest_path, "field 'summary.rejections' is not an object")


@dataclass(frozen=True)
class DataConfig:
    """One `configs:` entry of the card: a config name and the glob of its train files."""

    name: str
    path: str


HUB_CONFIGS = [DataConfig("default", "data/train-*")]


def local_configs(corpus: CorpusVersion) -> list[DataConfig]:
    """Configs for a card that sits in the version folder itself, next to `episodes/` and `passages/`."""
    return [
        DataConfig("default", "episodes/*.parquet"),
        *([DataConfig("passages", "passages/*.parquet")] if corpus.passage_files() else []),
    ]


def size_category(n: int) -> str:
    """The Hub's size bucket for `n` rows."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
    bounds += [(10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
    for bound, name in bounds:
        if n < bound:
            return name
    return "n>1B"


def schema_lines(corpus: CorpusVersion) -> list[dict]:
    """One entry per column of the episode shards, read from the first shard's Parquet schema."""
    schema = pq.read_schema(corpus.episode_files()[0])
    lines = []
    for field in schema:
        described = (field.metadata or {}).get(b"description", b"").decode()
        lines.append(
            {
                "name": field.name,
                "type": str(field.type),
                "description": described or COLUMN_DESCRIPTIONS.get(field.name, ""),
            }
        )
    return lines


def public_source(manifest: dict) -> dict:
    """The source as the card shows it: file names, sizes and checksums, no local directories."""
    source = manifest.get("source") or {}
    files = [
        {"name": Path(f.get("path", "?")).name, "size": f.get("size"), "sha256": f.get("sha256")}
        for f in source.get("files") or []
    ]
    return {
        "kind": source.get("kind"),
        "id": source.get("id"),
        "revision": source.get("revision"),
        "source": Path(str(source.get("source", "?"))).name,
        "files": files,
    }


def code_fence(text: str) -> str:
    """A backtick fence longer than any backtick run inside `text`."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def example_episode(con: duckdb.DuckDBPyConnection) -> dict | None:
    """The first episode, as the card shows it: its pivot passage (cut) and where else the mask appears."""
    with translate_errors("example episode"):
        first = first_row(con, 'SELECT episode_id FROM episodes ORDER BY "index" LIMIT 1')
    if first is None:
        return None
    ep = get_episode(con, first[0])
    text, starts = ep["text"], ep["passage_starts"]
    ends = [*starts[1:], len(text)]
    passages = [text[s:e].strip() for s, e in zip(starts, ends, strict=True)]
    pivot_pos = ep["passage_roles"].index("pivot")
    pivot = passages[pivot_pos]
    cut = len(pivot) > EXAMPLE_CHARS
    pivot = pivot[:EXAMPLE_CHARS].rstrip() + (" …" if cut else "")
    elsewhere = [
        {"id": ep["passage_ids"][i], "role": ep["passage_roles"][i]}
        for i, p in enumerate(passages)
        if i != pivot_pos and MASK in p
    ]
    return {
        "episode_id": ep["episode_id"],
        "answer": ep["answer"],
        "answer_label": ep["answer_label"],
        "num_masks": ep["num_masks"],
        "num_tokens": ep["num_tokens"],
        "num_chunks": len(ep["chunks"]),
        "num_passages": len(passages),
        "pivot": pivot,
        "cut": cut,
        "fence": code_fence(pivot),
        "elsewhere": elsewhere,
    }


def template_environment(folder: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # Markdown, not HTML
    )
    env.filters["number"] = number
    env.filters["share"] = share
    return env


def template_line(exc: jinja2.TemplateError, template: Path) -> int | None:
    """The template line an error comes from: syntax errors carry it, runtime errors are in the traceback."""
    if getattr(exc, "lineno", None):
        return exc.lineno
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() == template.resolve()
    ]
    return frames[-1].lineno if frames else None


def render_card(
    corpus: CorpusVersion,
    configs: list[DataConfig] | None = None,
    load_target: str | None = None,
    template: str | Path | None = None,
    summary: Summary | None = None,
) -> str:
    """The card's Markdown. `configs` default to the version folder's own layout (`episodes/*.parquet`)."""
    template = Path(template) if template else DEFAULT_TEMPLATE
    if not template.is_file():
        raise MemtrainError(f"{template}: card template not found")
    check_card_manifest(corpus, default_template=template.resolve() == DEFAULT_TEMPLATE.resolve())
    con = open_views(corpus)
    summary = summary or summarize(corpus, con)
    manifest = corpus.manifest
    config = manifest.get("config") or {}
    context = {
        "corpus": corpus,
        "manifest": manifest,
        "config": config,
        "config_yaml": yaml.safe_dump(config, sort_keys=False, allow_unicode=True).rstrip(),
        "pretty_name": f"MemTrain masked-entity episodes: {corpus.name} v{corpus.version}",
        "size_category": size_category(summary.episodes),
        "tags": TAGS,
        "configs": configs if configs is not None else local_configs(corpus),
        "load_target": load_target or str(corpus.path),
        "source": public_source(manifest),
        "schema": schema_lines(corpus),
        "summary": summary,
        "rejections": (manifest.get("summary") or {}).get("rejections") or {},
        "example": example_episode(con),
    }
    try:
        return template_environment(template.parent).get_template(template.name).render(**context)
    except jinja2.TemplateError as exc:
        line = template_line(exc, template)
        raise MemtrainError(f"{template}{f':{line}' if line else ''}: card template failed ({exc})") from None


def write_card(corpus: CorpusVersion, template: str | Path | None = None) -> Path:
    """Write `README.md` into the version folder, next to the shards (atomically)."""
    card = render_card(corpus, template=template)
    path = corpus.path / CARD_NAME
    with atomic_path(path) as tmp:
        tmp.write_text(card, encoding="utf-8")
    return path
