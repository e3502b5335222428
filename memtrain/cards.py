"""Hub dataset cards: render `data_cards/*.md.j2` for a corpus version into a `README.md` with YAML metadata.

The card's statistics are `inspect.summary.summarize` (the numbers `memtrain inspect-episodes` prints) and its
schema is read from the shards themselves, so neither can drift from the data.

The template follows the manifest's ``kind``: a masked-entity corpus (`memtrain build-corpus`, no ``kind``)
gets `episodes.md.j2`, a long-document HotpotQA instance set (``"kind": "hotpotqa-instances"``, written by
`memtrain.tasks.hotpotqa`) gets `hotpotqa-instances.md.j2`. Each built-in template names the manifest fields
it reads, so a manifest lacking one is blamed, not the template.
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
from .inspect.summary import INSTANCE_KIND, Summary, number, role_order, share, span, summarize
from .inspect.views import first_row, open_views, translate_errors
from .io import atomic_path
from .pipeline.schema import MASK
from .tasks import hotpotqa

TEMPLATES = Path(__file__).resolve().parent / "data_cards"
DEFAULT_TEMPLATE = TEMPLATES / "episodes.md.j2"  # a masked-entity corpus's card
INSTANCE_TEMPLATE = TEMPLATES / "hotpotqa-instances.md.j2"  # a HotpotQA instance set's card
CARD_NAME = "README.md"
EXAMPLE_CHARS = 1500
TAGS = ["memtrain", "memory-agent", "long-context", "masked-entity", "wikipedia", "reinforcement-learning"]
INSTANCE_TAGS = ["memtrain", "memory-agent", "long-context", "hotpotqa", "multi-hop-qa", "wikipedia"]

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


# The columns as an instance set uses them (the corpus columns it shares keep their name, not their meaning).
INSTANCE_COLUMN_DESCRIPTIONS = {
    **COLUMN_DESCRIPTIONS,
    "episode_id": "Id of the instance, `<question_id>@<N>`.",
    "index": "The question's position in its source (file or split); an instance draws all its randomness "
    "from `numpy.random.default_rng([seed, index, N])`.",
    "pivot_id": "The HotpotQA question id (the same as `question_id`).",
    "passage_ids": "Ids of the N documents, in document order: `hp-` and 16 hex digits of the sha256 of the "
    "rendered document, the `passage_id` of the document pool.",
    "passage_roles": "Role of each document, aligned with `passage_ids`: `gold` (a supporting paragraph of "
    "the question), `context` (the question's other own paragraphs, HotpotQA's distractors), `pad` (drawn "
    "from the pool), or `document` (MemAgent's files read without their questions).",
    "passage_starts": "Offset in `text` where each `Document i:` block starts.",
    "text": "The long document: N blocks `Document i:` + newline + title + newline + paragraph (i from 1), "
    "joined by a blank line.",
    "answer": "The first gold answer.",
    "answer_label": "`yes/no` when the answer is yes or no, else `span`.",
    "num_masks": "Always 0: nothing is masked in a QA instance (the column is shared with masked corpora).",
    "num_tokens": "Length of `text` in tokens of `tokenizer` (without the question).",
    "entities": "Always empty (the column is shared with masked corpora).",
    "question_id": "HotpotQA's `_id` of the question.",
    "problem": "The question.",
    "answers": "The gold answers (aliases); HotpotQA gives one.",
    "num_docs": "N, the number of documents in `text`.",
    "question_type": "HotpotQA's question type, `bridge` or `comparison` (empty when not known).",
}


@dataclass(frozen=True)
class CardKind:
    """What the card of one kind of corpus version is made of: its template and the manifest fields that
    template reads (a manifest lacking any is blamed, not the template)."""

    kind: str
    template: Path
    manifest_fields: tuple[str, ...]
    config_fields: tuple[str, ...]
    builder_config_fields: dict[str, tuple[str, ...]]  # config.builder → more config fields


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


MASKED_CARD = CardKind("masked-episodes", DEFAULT_TEMPLATE, CARD_MANIFEST_FIELDS, CARD_CONFIG_FIELDS, {})
INSTANCE_CARD = CardKind(
    INSTANCE_KIND,
    INSTANCE_TEMPLATE,
    ("memtrain_version", "created_at", "config", "source"),
    ("builder", "lengths", "tokenizer", "chunk_size"),
    {"memtrain": ("seed", "questions", "pool_size")},
)
CARD_KINDS = {card.kind: card for card in (MASKED_CARD, INSTANCE_CARD)}
WRITTEN_BY = {
    MASKED_CARD.kind: "memtrain build-corpus",
    INSTANCE_CARD.kind: "memtrain.tasks.hotpotqa (build_instances or build_memagent_instances)",
}


def card_kind(corpus: CorpusVersion) -> CardKind | None:
    """The card of the corpus version's kind (manifest ``kind``; none: a masked-entity corpus), or None for a
    kind memtrain has no card template for."""
    kind = corpus.manifest.get("kind")
    if kind is None:
        return MASKED_CARD
    return CARD_KINDS.get(kind) if isinstance(kind, str) else None


def check_card_manifest(
    corpus: CorpusVersion, default_template: bool = True, card: CardKind | None = None
) -> None:
    """Raise an error naming the manifest when a field the card is made of is missing (those the template
    of `card` reads: by default the template of the corpus's kind; none with `default_template=False`, a
    template of the user's) or of the wrong type."""
    manifest = corpus.manifest
    card = card or card_kind(corpus) or MASKED_CARD
    config = manifest.get("config")
    if config is not None and not isinstance(config, dict):
        raise InputError(
            corpus.manifest_path, "field 'config' is not an object; the card needs the build config"
        )
    missing = []
    if default_template:
        missing = [f for f in card.manifest_fields if manifest.get(f) is None]
        if isinstance(config, dict):
            fields = card.config_fields + card.builder_config_fields.get(config.get("builder"), ())
            missing += [f"config.{f}" for f in fields if config.get(f) is None]
    if missing:
        raise InputError(
            corpus.manifest_path,
            f"missing field(s) {', '.join(missing)} that the card needs "
            f"(was it written by {WRITTEN_BY.get(card.kind, 'memtrain')}? "
            "rebuilding it writes a complete one)",
        )
    if default_template and card is INSTANCE_CARD:
        lengths = config.get("lengths")
        if not isinstance(lengths, list) or not all(isinstance(n, int) for n in lengths):
            raise InputError(corpus.manifest_path, "field 'config.lengths' is not a list of numbers")
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
    path: str | list[str]  # a glob, or the shard files


HUB_CONFIGS = [DataConfig("default", "data/train-*")]


def hub_shard_names(count: int) -> list[str]:
    """The Hub folder's names of `count` episode shards, in order (`memtrain publish` lays them out so)."""
    return [f"data/train-{i:05d}-of-{count:05d}.parquet" for i in range(count)]


def local_configs(corpus: CorpusVersion) -> list[DataConfig]:
    """Configs for a card that sits in the version folder itself, next to `episodes/` and `passages/`."""
    return [
        DataConfig("default", "episodes/*.parquet"),
        *([DataConfig("passages", "passages/*.parquet")] if corpus.passage_files() else []),
    ]


def shard_lengths(corpus: CorpusVersion) -> list[int] | None:
    """The N of each episode shard of an instance set, from the shards' footers (no data is read), or None
    when a shard holds several N (or records no statistics)."""
    lengths = []
    for file in corpus.episode_files():
        metadata = pq.ParquetFile(file).metadata
        names = [metadata.schema.column(i).path for i in range(metadata.num_columns)]
        if "num_docs" not in names:
            return None
        column = names.index("num_docs")
        values = set()
        for group in range(metadata.num_row_groups):
            stats = metadata.row_group(group).column(column).statistics
            if stats is None or not stats.has_min_max:
                return None
            values |= {stats.min, stats.max}
        if len(values) != 1:
            return None
        lengths.append(int(values.pop()))
    return lengths


def length_configs(corpus: CorpusVersion, hub: bool) -> list[DataConfig]:
    """One config per N, `n<N>`, listing the shards of that N: in the Hub folder (`data/train-…`) or in the
    version folder (`episodes/…`). None when a shard mixes lengths."""
    lengths = shard_lengths(corpus)
    if not lengths:
        return []
    files = corpus.episode_files()
    names = hub_shard_names(len(files)) if hub else [f.relative_to(corpus.path).as_posix() for f in files]
    by_length: dict[int, list[str]] = {}
    for n, name in zip(lengths, names, strict=True):
        by_length.setdefault(n, []).append(name)
    return [DataConfig(f"n{n}", paths) for n, paths in sorted(by_length.items())]


def size_category(n: int) -> str:
    """The Hub's size bucket for `n` rows."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
    bounds += [(10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
    for bound, name in bounds:
        if n < bound:
            return name
    return "n>1B"


def schema_lines(corpus: CorpusVersion, descriptions: dict[str, str] = COLUMN_DESCRIPTIONS) -> list[dict]:
    """One entry per column of the episode shards, read from the first shard's Parquet schema."""
    schema = pq.read_schema(corpus.episode_files()[0])
    lines = []
    for field in schema:
        described = (field.metadata or {}).get(b"description", b"").decode()
        lines.append(
            {
                "name": field.name,
                "type": str(field.type),
                "description": described or descriptions.get(field.name, ""),
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
    if "pivot" not in ep["passage_roles"]:
        return None
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


def cut(text: str, chars: int = EXAMPLE_CHARS) -> tuple[str, bool]:
    return (text, False) if len(text) <= chars else (text[:chars].rstrip() + " …", True)


def example_instance(con: duckdb.DuckDBPyConnection) -> dict | None:
    """The instance of the first question at the smallest N, as the card shows it: the question, its answers,
    where its gold documents are, and those documents (each cut)."""
    with translate_errors("example instance"):
        first = first_row(
            con, 'SELECT episode_id FROM episodes ORDER BY num_docs, "index", episode_id LIMIT 1'
        )
    if first is None:
        return None
    ep = get_episode(con, first[0])
    text, starts, roles = ep["text"], ep["passage_starts"], ep["passage_roles"]
    ends = [*starts[1:], len(text)]
    shown = [i for i, role in enumerate(roles) if role == "gold"] or [0]
    documents = []
    for i in shown:
        block, was_cut = cut(text[starts[i] : ends[i]].strip())
        documents.append({"number": i + 1, "role": roles[i], "text": block, "cut": was_cut})
    fence = code_fence("\n".join(d["text"] for d in documents))
    counts = {role: roles.count(role) for role in sorted(set(roles), key=role_order)}
    return {
        "episode_id": ep["episode_id"],
        "question_id": ep["question_id"],
        "question": ep["problem"],
        "answers": list(ep["answers"] or [ep["answer"]]),
        "answer_label": ep["answer_label"],
        "question_type": ep["question_type"],
        "num_docs": ep["num_docs"],
        "num_tokens": ep["num_tokens"],
        "num_chunks": len(ep["chunks"]),
        "roles": counts,
        "documents": documents,
        "fence": fence,
    }


def eval_command(manifest: dict, summary: Summary) -> str:
    """The `memtrain eval hotpotqa` command that builds these same instances from their source and scores a
    model on them."""
    config = manifest.get("config") or {}
    source = manifest.get("source") or {}
    lengths = ",".join(str(n) for n in config.get("lengths") or [n.num_docs for n in summary.lengths])
    parts = ["memtrain eval hotpotqa"]
    if config.get("builder") == "memagent":
        parts.append("--data FOLDER_WITH_eval_N.json")
    elif source.get("kind") == "hf-dataset":
        parts.append(f"--data {source.get('id') or hotpotqa.DEFAULT_HUB_ID}")
        if source.get("split"):
            parts.append(f"--split {source['split']}")
    elif source.get("files"):
        parts.append(f"--data {Path(str(source['files'][0].get('path', 'HOTPOTQA_FILE'))).name}")
    else:
        parts.append("--data HOTPOTQA_FILE")
    parts.append(f"--lengths {lengths}")
    questions = config.get("questions") or max((n.instances for n in summary.lengths), default=0)
    if questions:
        parts.append(f"--questions {questions}")
    if config.get("builder") != "memagent":
        parts.append(f"--instance-seed {config.get('seed')}")
    parts.append("--model MODEL")
    return " ".join(parts)


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
    env.filters["span"] = span
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
    hub: bool = False,
) -> str:
    """The card's Markdown. `configs` default to the version folder's own layout (`episodes/*.parquet`), or
    with `hub` to the Hub folder's (`data/train-*`); an instance set adds one config per N (`n50`, …).
    `template` defaults to the template of the manifest's kind."""
    kind = card_kind(corpus)
    if template is None:
        if kind is None:
            raise MemtrainError(
                f"{corpus.manifest_path}: kind {corpus.manifest.get('kind')!r} has no dataset card template "
                f"(known: none for a masked-entity corpus, {INSTANCE_KIND!r}); give one with --template"
            )
        template = kind.template
    template = Path(template)
    if not template.is_file():
        raise MemtrainError(f"{template}: card template not found")
    builtin = {card.template.resolve(): card for card in CARD_KINDS.values()}.get(template.resolve())
    check_card_manifest(corpus, default_template=builtin is not None, card=builtin)
    con = open_views(corpus)
    summary = summary or summarize(corpus, con)
    manifest = corpus.manifest
    config = manifest.get("config") or {}
    instances = kind is INSTANCE_CARD
    if configs is None:
        configs = list(HUB_CONFIGS) if hub else local_configs(corpus)
        if instances:
            configs += length_configs(corpus, hub)
    context = {
        "corpus": corpus,
        "manifest": manifest,
        "config": config,
        "config_yaml": yaml.safe_dump(config, sort_keys=False, allow_unicode=True).rstrip(),
        "pretty_name": f"MemTrain masked-entity episodes: {corpus.name} v{corpus.version}",
        "size_category": size_category(summary.episodes),
        "tags": TAGS,
        "configs": configs,
        "load_target": load_target or str(corpus.path),
        "source": public_source(manifest),
        "schema": schema_lines(corpus, INSTANCE_COLUMN_DESCRIPTIONS if instances else COLUMN_DESCRIPTIONS),
        "summary": summary,
        "rejections": (manifest.get("summary") or {}).get("rejections") or {},
        "example": example_episode(con),
    }
    if instances:
        source = manifest.get("source") if isinstance(manifest.get("source"), dict) else {}
        context.update(
            pretty_name=f"MemTrain long-document HotpotQA: {corpus.name} v{corpus.version}",
            tags=INSTANCE_TAGS,
            source={**context["source"], "config": source.get("config"), "split": source.get("split")},
            example=example_instance(con),
            length_configs=[c for c in configs if c.name.startswith("n") and c.name[1:].isdigit()],
            same_questions=all(n.questions == summary.questions for n in summary.lengths),
            instance_roles=sorted({r for n in summary.lengths for r in n.roles}, key=role_order),
            eval_command=eval_command(manifest, summary),
            memagent_hub_id=hotpotqa.MEMAGENT_HUB_ID,
        )
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
