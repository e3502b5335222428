"""Long-document HotpotQA: RULER-HotpotQA as MemAgent builds it, seeded, written as versioned corpus folders.

Questions come from the original HotpotQA files (distractor setting; a JSON list, JSON Lines or Parquet with
``_id``, ``question``, ``answer``, ``context``, ``supporting_facts``), from the Hub (``datasets.load_dataset
(hub_id, "distractor", split=...)``), or, for exact parity with MemAgent's numbers, instances come ready-made
from MemAgent's released ``eval_{N}.json`` files.

The builder (RULER's ``qa_2``, as MemAgent uses it, made deterministic):

- the **pool** is every paragraph of the loaded questions rendered ``title + "\\n" + "".join(sentences)``,
  deduplicated and sorted (the full dev set gives 66,635 documents);
- an instance of question q at length N keeps q's own paragraphs and is padded with pool documents drawn at
  random (never its own) up to N; the N documents are shuffled and rendered as blocks
  ``"Document {i}:\\n{document}"`` (i from 1) joined by a blank line;
- all the randomness of (q, N) comes from ``numpy.random.default_rng([seed, q.index, N])``, where
  ``q.index`` is the question's position in its source (file or split): the same seed gives byte-identical
  instances, every N has the same questions, an instance never depends on the other lengths or on which
  other questions were selected, and building one N never depends on another. The draws use only the
  generator's uniform doubles (pads: the smallest of one key per candidate; order: argsort of one key per
  document), so they do not change with NumPy's implementation of ``choice`` or ``permutation``.

An instance set is a corpus version (``OUT/<name>/v<N>/``: manifest with per-shard checksums, ``episodes/``,
``passages/``), so ``memtrain inspect-episodes`` and ``memtrain rollout`` read it unchanged. Episode rows have
the columns of :data:`INSTANCE_SCHEMA` (the corpus episode columns plus ``question_id``, ``problem``,
``answers``, ``num_docs``, ``question_type``); the ``passages`` table is the pool. Shards hold a few
instances each (fewer as N grows) and are written one row group at a time, so a 6400-document instance
(~900k tokens) never needs the whole benchmark in memory. Shards are cached under ``OUT/<name>/.cache/`` by
everything they depend on, so adding a length to a set reuses the shards of the lengths already built.
"""

from __future__ import annotations

import collections
import datetime
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import __version__
from ..chunks import RULE_VERSION
from ..corpus import CorpusVersion, file_sha256, list_versions, open_corpus, short_reason
from ..errors import ConfigError, InputError, MemtrainError
from ..io import atomic_path, exclusive_lock, write_json_atomic
from ..outputs import check_writable_output
from ..pipeline.executors import make_executor, resolve_workers
from ..pipeline.progress import Reporter
from ..pipeline.schema import EPISODE_SCHEMA, PASSAGE_SCHEMA, SCHEMA_VERSION
from ..pipeline.tokens import chunk_bounds, count_tokens, load_tokenizer
from ..pipeline.units import is_finished, publish_version, remove_temporaries, source_key, unit_stats

DEFAULT_HUB_ID = "hotpotqa/hotpot_qa"
DEFAULT_HUB_CONFIG = "distractor"
DEFAULT_SPLIT = "validation"
MEMAGENT_HUB_ID = "BytedTsinghua-SIA/hotpotqa"  # MemAgent's released eval_{N}.json files
DEFAULT_LENGTHS = (50, 100, 200, 400, 800, 1600, 3200, 6400)
EXTRA_LENGTHS = (12800, 25600)  # allowed on request (the full dev pool has 66,635 documents)
DEFAULT_CHUNK_SIZE = 5000  # tokens per chunk at evaluation (MemAgent)
DEFAULT_TOKENIZER = "smollm2-135m-instruct"  # the embedded model's

DOCUMENT_TEMPLATE = "Document {i}:\n{document}"
DOCUMENT_SEPARATOR = "\n\n"
# MemAgent's no-context filter prompt (taskutils/memory_data/filter.py), a str.format template: the braces of
# \boxed{} are doubled, so NO_CONTEXT_PROMPT.format(question=q) == q + "\nYour final answer in \\boxed{}.\n".
NO_CONTEXT_PROMPT = "{question}\nYour final answer in \\boxed{{}}.\n"

ROLE_GOLD = "gold"  # one of the question's supporting paragraphs
ROLE_CONTEXT = "context"  # the question's other own paragraphs (HotpotQA's distractors)
ROLE_PAD = "pad"  # drawn from the pool
ROLE_DOCUMENT = "document"  # a MemAgent instance read without its HotpotQA question: role unknown

BUILDER_VERSION = 1  # bump when what a built instance contains changes
INSTANCE_KIND = "hotpotqa-instances"
SHARD_DOCUMENTS = 3200  # documents per instance shard: max(1, 3200 // N) instances
TOKEN_BATCH_CHARS = 2_000_000  # instances tokenized together (and written as one row group), in characters
PASSAGE_SHARD_ROWS = 20_000
PARALLEL_MIN_DOCUMENTS = 20_000  # fewer documents to render: one process (a worker starts in seconds)
PASSAGE_TOKEN_BATCH = 2000
READ_CHARS = 1 << 20

INSTANCE_SCHEMA = pa.schema(
    [
        *EPISODE_SCHEMA,
        pa.field("question_id", pa.string(), nullable=False),  # HotpotQA `_id`
        pa.field("problem", pa.string(), nullable=False),  # the question
        pa.field("answers", pa.list_(pa.string()), nullable=False),  # gold aliases (HotpotQA: [answer])
        pa.field("num_docs", pa.int32(), nullable=False),  # N
        pa.field("question_type", pa.string(), nullable=False),  # "bridge" | "comparison" | ""
    ]
)


# --- questions ---------------------------------------------------------------------------------------------


@dataclass
class Question:
    """One HotpotQA question with its own paragraphs (2 supporting + 8 distractors in the distractor set)."""

    question_id: str
    question: str
    answers: list[str]
    type: str
    paragraphs: list[tuple[str, str]]  # (title, text), text = "".join(sentences)
    supporting_titles: list[str]
    index: int = 0  # position in its source (file or split): seeds its instances

    @property
    def documents(self) -> list[str]:
        """The paragraphs as the pool renders them: ``title + "\\n" + text``."""
        return [render_document(title, text) for title, text in self.paragraphs]


def render_document(title: str, text: str) -> str:
    return f"{title}\n{text}"


def document_id(document: str) -> str:
    """A stable id of a rendered document (its content's hash): the same in every pool and every set."""
    return "hp-" + hashlib.sha256(document.encode("utf-8")).hexdigest()[:16]


def answer_label(answer: str) -> str:
    return "yes/no" if answer.strip().lower() in ("yes", "no") else "span"


def load_questions(
    source: str | os.PathLike | None = None,
    *,
    split: str = DEFAULT_SPLIT,
    config: str = DEFAULT_HUB_CONFIG,
    revision: str | None = None,
) -> list[Question]:
    """Questions from a local HotpotQA file (JSON list, JSON Lines or Parquet) or a Hub id (default
    ``hotpotqa/hotpot_qa``, `config` "distractor", `split` "validation"). A folder of MemAgent files is not
    questions: use :func:`build_memagent_instances` (:func:`is_memagent_source` tells them apart)."""
    if source is None:
        return load_hotpotqa_hub(DEFAULT_HUB_ID, split=split, config=config, revision=revision)
    path = Path(source)
    if path.is_dir():
        if memagent_files_in(path):
            raise InputError(
                path, "is a folder of MemAgent evaluation files (eval_{N}.json): instances, not questions"
            )
        raise InputError(path, "is a folder; give a HotpotQA file (.json, .jsonl or .parquet) or a Hub id")
    if path.exists():
        return load_hotpotqa_file(path)
    if looks_like_path(str(source)):
        raise InputError(path, "no such file")
    return load_hotpotqa_hub(str(source), split=split, config=config, revision=revision)


def looks_like_path(text: str) -> bool:
    """A name that can only be a local file (a Hub id is OWNER/NAME, no suffix, no leading ./ or /)."""
    return (
        text.startswith((".", "/", "~"))
        or text.count("/") > 1
        or text.lower().endswith((".json", ".jsonl", ".parquet"))
    )


def load_hotpotqa_file(path: str | os.PathLike) -> list[Question]:
    """Questions from a JSON list, JSON Lines or Parquet file in HotpotQA's format (original or Hub form)."""
    path = Path(path)
    return questions_from_records(iter_records(path), path)


def load_hotpotqa_hub(
    hub_id: str = DEFAULT_HUB_ID,
    *,
    split: str = DEFAULT_SPLIT,
    config: str = DEFAULT_HUB_CONFIG,
    revision: str | None = None,
) -> list[Question]:
    """Questions of a Hub dataset in HotpotQA's layout, through ``datasets.load_dataset``."""
    import datasets

    try:
        dataset = datasets.load_dataset(hub_id, config, split=split, revision=revision)
    except Exception as exc:  # datasets raises many kinds (network, missing config/split, not found)
        raise MemtrainError(
            f"{hub_id}: cannot load the Hub dataset (config {config!r}, split {split!r}): {short_reason(exc)}"
        ) from None
    return questions_from_records(enumerate(dataset), f"{hub_id} [{config}/{split}]")


def questions_from_records(records: Iterable[tuple[int, Any]], source: str | os.PathLike) -> list[Question]:
    """(record number, record) pairs in HotpotQA's layout → questions; a bad record is named, with `source`.

    Both forms are read: the original (``_id``; ``context`` and ``supporting_facts`` as lists of
    [title, sentences] / [title, sentence id] pairs) and the Hub's (``id``; ``context`` as
    ``{"title": [...], "sentences": [[...]]}``, ``supporting_facts`` as
    ``{"title": [...], "sent_id": [...]}``), and lists of ``{"title", "sentences"}`` objects (how Parquet
    stores pairs)."""
    questions: list[Question] = []
    seen: dict[str, int] = {}
    for n, record in records:
        question = question_from_record(record, n, source)
        if question.question_id in seen:
            first = seen[question.question_id]
            raise InputError(
                source, f"record {n}: _id {question.question_id!r} appears twice (also record {first})"
            )
        seen[question.question_id] = n
        questions.append(question)
    if not questions:
        raise InputError(source, "no question records")
    return questions


def question_from_record(record: Any, n: int, source: str | os.PathLike) -> Question:
    where = f"record {n}"
    if not isinstance(record, Mapping):
        raise InputError(source, f"{where}: not an object but a {type(record).__name__}")
    qid = record.get("_id", record.get("id"))
    if qid is None:
        raise InputError(source, f"{where}: missing field '_id' (the question id)")
    if not isinstance(qid, str | int) or isinstance(qid, bool) or not str(qid):
        raise InputError(source, f"{where}: field '_id' is not a non-empty string")
    qid = str(qid)
    where = f"record {n} (_id {qid})"
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        what = "missing field" if question is None else "not a non-empty string:"
        raise InputError(source, f"{where}: {what} 'question'")
    answers = _answers(record, source, where)
    if "context" not in record or record["context"] is None:
        raise InputError(source, f"{where}: missing field 'context' (the question's paragraphs)")
    paragraphs = _paragraphs(record["context"], source, where)
    supporting = _supporting_titles(record.get("supporting_facts"), source, where)
    qtype = record.get("type") or ""
    if not isinstance(qtype, str):
        raise InputError(source, f"{where}: field 'type' is not a string")
    return Question(qid, question, answers, qtype, paragraphs, supporting, n)


def _answers(record: Mapping, source, where: str) -> list[str]:
    answer = record.get("answer")
    if answer is None and "answers" in record:
        answer = record["answers"]
    if answer is None:
        raise InputError(
            source, f"{where}: missing field 'answer' (HotpotQA's test set has none: use the dev set)"
        )
    answers = [answer] if isinstance(answer, str) else answer
    if (
        not isinstance(answers, list | tuple)
        or not answers
        or not all(isinstance(a, str) and a.strip() for a in answers)
    ):
        raise InputError(source, f"{where}: field 'answer' is not a non-empty string (or list of strings)")
    return list(answers)


def _paragraphs(context: Any, source, where: str) -> list[tuple[str, str]]:
    bad = (
        f"{where}: field 'context' is not a list of [title, sentences] pairs "
        "(nor {'title': [...], 'sentences': [[...]]})"
    )
    if isinstance(context, Mapping):
        titles, sentences = context.get("title"), context.get("sentences")
        if not isinstance(titles, list | tuple) or not isinstance(sentences, list | tuple):
            raise InputError(source, bad)
        if len(titles) != len(sentences):
            raise InputError(
                source, f"{where}: 'context' has {len(titles)} titles but {len(sentences)} sentence lists"
            )
        pairs = list(zip(titles, sentences, strict=True))
    elif isinstance(context, list | tuple):
        pairs = []
        for item in context:
            if isinstance(item, Mapping):
                pairs.append((item.get("title"), item.get("sentences")))
            elif isinstance(item, list | tuple) and len(item) == 2:
                pairs.append((item[0], item[1]))
            else:
                raise InputError(source, bad)
    else:
        raise InputError(source, bad)
    paragraphs = []
    for k, (title, sentences) in enumerate(pairs):
        if not isinstance(title, str):
            raise InputError(source, f"{where}: paragraph {k} of 'context' has no string title")
        if isinstance(sentences, str):
            sentences = [sentences]
        if not isinstance(sentences, list | tuple) or not all(isinstance(s, str) for s in sentences):
            raise InputError(
                source, f"{where}: paragraph {k} of 'context' ({title!r}) has no list of sentences"
            )
        paragraphs.append((title, "".join(sentences)))
    if not paragraphs:
        raise InputError(source, f"{where}: field 'context' has no paragraphs")
    return paragraphs


def _supporting_titles(facts: Any, source, where: str) -> list[str]:
    if facts is None:
        return []
    bad = f"{where}: field 'supporting_facts' is not a list of [title, sentence id] pairs"
    if isinstance(facts, Mapping):
        titles = facts.get("title")
        if not isinstance(titles, list | tuple):
            raise InputError(source, bad)
    elif isinstance(facts, list | tuple):
        titles = []
        for item in facts:
            if isinstance(item, Mapping):
                titles.append(item.get("title"))
            elif isinstance(item, list | tuple) and item:
                titles.append(item[0])
            else:
                raise InputError(source, bad)
    else:
        raise InputError(source, bad)
    if not all(isinstance(t, str) for t in titles):
        raise InputError(source, bad)
    return list(dict.fromkeys(titles))


# --- reading records: JSON list, JSON Lines, Parquet (streamed) ---------------------------------------------


def iter_records(path: Path) -> Iterator[tuple[int, Any]]:
    """(record number, record) of a JSON list, JSON Lines or Parquet file, streamed (a large file is never
    held in memory at once); anything unreadable is an `InputError` naming the file."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise InputError(path, f"cannot read the file ({exc.strerror or exc})") from None
    if magic == b"PAR1":
        return iter_parquet(path)
    if path.suffix.lower() == ".parquet":
        raise InputError(path, "not a Parquet file (no PAR1 header)")
    return iter_json(path)


def iter_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        parquet = pq.ParquetFile(path)
        n = 0
        for batch in parquet.iter_batches(batch_size=256):
            for record in batch.to_pylist():
                yield n, record
                n += 1
    except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError
        raise InputError(path, f"not a readable Parquet file ({short_reason(exc)})") from None


def iter_json(path: Path) -> Iterator[tuple[int, Any]]:
    """A JSON list of records or JSON Lines, decoded incrementally."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            reader = _JsonStream(path, handle)
            first = reader.first_char()
            if first is None:
                raise InputError(path, "empty file: no records")
            if first == "[":
                yield from reader.array()
                return
            if first != "{":
                raise InputError(
                    path, f"not JSON: expected a JSON list of records or JSON Lines, found {first!r} first"
                )
            handle.seek(0)
            n = 0
            for lineno, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    hint = "; expected a JSON list of records or one record per line" if n == 0 else ""
                    raise InputError(path, f"line {lineno}: not valid JSON ({exc.msg}){hint}") from None
                yield n, record
                n += 1
    except UnicodeDecodeError:
        raise InputError(path, "not JSON (not UTF-8 text)") from None
    except OSError as exc:
        raise InputError(path, f"cannot read the file ({exc.strerror or exc})") from None


class _JsonStream:
    """The elements of a top-level JSON list, one at a time, from a text handle read in growing blocks."""

    WHITESPACE = re.compile(r"[ \t\n\r]*")

    def __init__(self, path: Path, handle) -> None:
        self.path, self.handle = path, handle
        self.buf, self.pos, self.consumed, self.eof = "", 0, 0, False
        self.decoder = json.JSONDecoder()

    def more(self) -> bool:
        if self.eof:
            return False
        block = self.handle.read(max(READ_CHARS, len(self.buf) - self.pos))
        if not block:
            self.eof = True
            return False
        if self.pos > READ_CHARS:
            self.consumed += self.pos
            self.buf, self.pos = self.buf[self.pos :], 0
        self.buf += block
        return True

    def skip_space(self) -> str | None:
        while True:
            self.pos = self.WHITESPACE.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return None

    def first_char(self) -> str | None:
        return self.skip_space()

    def array(self) -> Iterator[tuple[int, Any]]:
        self.pos += 1  # "["
        n = 0
        while True:
            c = self.skip_space()
            if c is None:
                raise InputError(
                    self.path, f"not valid JSON: the file ends inside the list (after {n} records)"
                )
            if c == "]":
                self.pos += 1
                if self.skip_space() is not None:
                    raise InputError(self.path, "not valid JSON: text after the list's closing ']'")
                return
            if n:
                if c != ",":
                    raise InputError(
                        self.path,
                        f"not valid JSON at character {self.consumed + self.pos:,}: expected ',' or ']' "
                        f"after record {n - 1}",
                    )
                self.pos += 1
                if self.skip_space() is None:
                    raise InputError(self.path, f"not valid JSON: the file ends after record {n - 1}")
            yield n, self.value(n)
            n += 1

    def value(self, n: int) -> Any:
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if self.more():
                    continue
                what = "the file ends inside it" if exc.pos >= len(self.buf) - 1 else exc.msg
                raise InputError(
                    self.path,
                    f"record {n}: not valid JSON at character {self.consumed + exc.pos:,} ({what})",
                ) from None
            if end == len(self.buf) and self.more():
                continue  # a number or literal may go on in the next block
            self.pos = end
            return value


# --- fingerprints ------------------------------------------------------------------------------------------


def source_fingerprint(
    source: str | os.PathLike | None = None,
    *,
    split: str = DEFAULT_SPLIT,
    config: str = DEFAULT_HUB_CONFIG,
    revision: str | None = None,
) -> dict:
    """What the manifest records about where questions came from: a local file with its size and sha256,
    or a Hub id with its resolved revision (the commit, when the Hub can be asked; else `revision`)."""
    if source is not None and Path(source).exists():
        path = Path(source)
        files = [path] if path.is_file() else sorted(memagent_files_in(path).values())
        return {
            "source": str(source),
            "kind": "memagent" if path.is_dir() else f"hotpotqa-{path.suffix.lstrip('.').lower() or 'file'}",
            "files": [
                {"path": str(f.resolve()), "size": f.stat().st_size, "sha256": file_sha256(f)} for f in files
            ],
        }
    hub_id = str(source) if source is not None else DEFAULT_HUB_ID
    return {
        "source": hub_id,
        "kind": "hf-dataset",
        "id": hub_id,
        "config": config,
        "split": split,
        "revision": hub_revision(hub_id, revision) or revision,
        "files": [],
    }


def hub_revision(hub_id: str, revision: str | None = None) -> str | None:
    """The commit a Hub dataset id (at `revision`) resolves to, or None offline."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return None
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(hub_id, revision=revision, timeout=20).sha
    except Exception:  # offline, not found, rate-limited: the content digest still identifies the build
        return None


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def questions_digest(questions: Sequence[Question]) -> str:
    """sha256 of all an instance takes from its questions (ids, positions, text, answers, paragraphs)."""
    digest = hashlib.sha256()
    for q in questions:
        item = [q.index, q.question_id, q.question, q.answers, q.type, q.paragraphs, q.supporting_titles]
        digest.update(json.dumps(item, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


# --- the document pool and the builder ----------------------------------------------------------------------


class DocumentPool:
    """Every distinct rendered paragraph, sorted (RULER/MemAgent's pool), addressed by position."""

    def __init__(self, documents: Iterable[str]) -> None:
        self.documents: list[str] = sorted(set(documents))
        self.position: dict[str, int] = {d: i for i, d in enumerate(self.documents)}
        self._ids: list[str] | None = None
        self._digest: str | None = None
        self.num_questions: int | None = None

    @classmethod
    def from_questions(cls, questions: Iterable[Question]) -> DocumentPool:
        questions = list(questions)
        pool = cls(d for q in questions for d in q.documents)
        pool.num_questions = len(questions)
        return pool

    def __len__(self) -> int:
        return len(self.documents)

    @property
    def ids(self) -> list[str]:
        if self._ids is None:
            self._ids = [document_id(d) for d in self.documents]
        return self._ids

    @property
    def digest(self) -> str:
        if self._digest is None:
            digest = hashlib.sha256()
            for d in self.documents:
                digest.update(d.encode("utf-8"))
                digest.update(b"\0")
            self._digest = digest.hexdigest()
        return self._digest

    def describe(self) -> str:
        where = f" (every distinct paragraph of the {self.num_questions:,} questions loaded)"
        return f"{len(self):,} documents" + (where if self.num_questions is not None else "")


def own_documents(question: Question) -> list[str]:
    """The question's paragraphs as documents, each once, in their order."""
    return list(dict.fromkeys(question.documents))


def check_lengths(questions: Sequence[Question], pool: DocumentPool, lengths: Iterable[int]) -> list[int]:
    """The lengths, sorted and each once, if every question can be built at every one; else a ConfigError
    naming the pool size (or the question with more own paragraphs than N)."""
    lengths = sorted({int(n) for n in lengths})
    if not lengths:
        raise ConfigError("no lengths given (numbers of documents N, e.g. 50,100,200)")
    if lengths[0] < 1:
        raise ConfigError(f"lengths are numbers of documents and must be at least 1, got {lengths[0]}")
    too_long = [n for n in lengths if n > len(pool)]
    if too_long:
        raise ConfigError(
            f"N={too_long[0]:,} documents is more than the pool holds: {pool.describe()}; "
            f"use N ≤ {len(pool):,}, or load more questions for the pool (HotpotQA dev gives 66,635)"
        )
    for q in questions:
        own = own_documents(q)
        missing = [d for d in own if d not in pool.position]
        if missing:
            raise ConfigError(
                f"question {q.question_id}: paragraph {missing[0].split(chr(10), 1)[0]!r} is not in the pool "
                "(build the pool from a question set that includes this question)"
            )
        if len(own) > lengths[0]:
            raise ConfigError(
                f"N={lengths[0]} is fewer than question {q.question_id}'s {len(own)} own paragraphs; "
                f"use N ≥ {max(len(own_documents(x)) for x in questions)}"
            )
    return lengths


def instance_rng(seed: int, question_index: int, num_docs: int) -> np.random.Generator:
    return np.random.default_rng([seed, question_index, num_docs])


def smallest_keys(keys: np.ndarray, k: int) -> np.ndarray:
    """Positions of the `k` smallest keys, smallest first: a sample without replacement that depends only on
    the generator's doubles (PCG64's stream), not on how a NumPy version implements `choice`/`permutation`."""
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(keys, k - 1)[:k] if k < len(keys) else np.arange(len(keys))
    return part[np.argsort(keys[part], kind="stable")]


def build_instance(question: Question, pool: DocumentPool, num_docs: int, seed: int) -> dict:
    """One instance row (all :data:`INSTANCE_SCHEMA` columns but the token-dependent ones: ``num_tokens``,
    ``tokenizer``, ``chunk_size``, ``chunks``). Call :func:`check_lengths` first for clear errors."""
    own = own_documents(question)
    if num_docs < len(own) or num_docs > len(pool):
        check_lengths([question], pool, [num_docs])
    rng = instance_rng(seed, question.index, num_docs)
    own_positions = np.array([pool.position[d] for d in own], dtype=np.int64)
    candidates = np.delete(np.arange(len(pool), dtype=np.int64), own_positions)
    pads = candidates[smallest_keys(rng.random(len(candidates)), num_docs - len(own))]
    chosen = np.concatenate([own_positions, pads])[np.argsort(rng.random(num_docs), kind="stable")]
    own_set = set(own_positions.tolist())
    supporting = set(question.supporting_titles)
    roles, ids, starts, blocks = [], [], [], []
    offset = 0
    for i, position in enumerate(chosen.tolist(), 1):
        document = pool.documents[position]
        if position in own_set:
            roles.append(ROLE_GOLD if document.split("\n", 1)[0] in supporting else ROLE_CONTEXT)
        else:
            roles.append(ROLE_PAD)
        ids.append(pool.ids[position])
        block = DOCUMENT_TEMPLATE.format(i=i, document=document)
        starts.append(offset)
        offset += len(block) + len(DOCUMENT_SEPARATOR)
        blocks.append(block)
    return instance_row(question, num_docs, DOCUMENT_SEPARATOR.join(blocks), ids, roles, starts)


def instance_row(
    question: Question, num_docs: int, text: str, ids: list[str], roles: list[str], starts: list[int]
) -> dict:
    return {
        "episode_id": f"{question.question_id}@{num_docs}",
        "index": question.index,
        "pivot_id": question.question_id,
        "passage_ids": ids,
        "passage_roles": roles,
        "passage_starts": starts,  # where each block ("Document i:" line) starts in text
        "text": text,
        "answer": question.answers[0],
        "answer_label": answer_label(question.answers[0]),
        "num_masks": 0,
        "entities": [],
        "question_id": question.question_id,
        "problem": question.question,
        "answers": list(question.answers),
        "num_docs": num_docs,
        "question_type": question.type,
    }


# --- writing instance sets -------------------------------------------------------------------------------


def _identity(payload: dict) -> str:
    return _digest(payload)[:16]


def write_instance_shard(dest: Path, rows: Iterable[dict], tokenizer_name: str, chunk_size: int) -> dict:
    """Tokenize and cut raw instance rows, writing them to `dest` a row group at a time (a few instances, at
    most ~TOKEN_BATCH_CHARS characters, or one larger instance); the file appears only when complete."""
    tokenizer = load_tokenizer(tokenizer_name)
    tokens: list[int] = []
    with atomic_path(dest) as tmp, pq.ParquetWriter(tmp, INSTANCE_SCHEMA, compression="zstd") as writer:
        pending: list[dict] = []
        chars = 0

        def flush() -> None:
            texts = [row["text"] for row in pending]
            bounds = chunk_bounds(tokenizer, texts, chunk_size, batch_size=len(texts))
            for row, (num_tokens, chunks) in zip(pending, bounds, strict=True):
                row.update(
                    num_tokens=num_tokens, tokenizer=tokenizer_name, chunk_size=chunk_size, chunks=chunks
                )
                tokens.append(num_tokens)
            writer.write_table(pa.Table.from_pylist(pending, schema=INSTANCE_SCHEMA))
            pending.clear()

        for row in rows:
            pending.append(row)
            chars += len(row["text"])
            if chars >= TOKEN_BATCH_CHARS:
                flush()
                chars = 0
        if pending:
            flush()
    return {"rows": len(tokens), "num_tokens": tokens}


def write_unit(out: str, rows: list[dict], tokenizer_name: str, chunk_size: int) -> dict:
    """One finished unit: the instance shard and its stats file beside it (what a rerun checks)."""
    start = time.perf_counter()
    path = Path(out)
    result = write_instance_shard(path, rows, tokenizer_name, chunk_size)
    info = {"num_docs": rows[0]["num_docs"] if rows else None, **result}
    info["seconds"] = round(time.perf_counter() - start, 3)
    write_json_atomic(path.with_suffix(".json"), {**info, "file": unit_stats(path)})
    return info


# What every instance-writing worker imports before its set-up, once, in the server the workers fork from.
WORKER_MODULES = ("memtrain.tasks.hotpotqa", "transformers.models.auto.tokenization_auto")


def _start_worker(tokenizer_name: str) -> None:
    load_tokenizer(tokenizer_name)


class UnitWriter:
    """Writes instance shards (`write_unit`), in `workers` processes when more than one, at most two per
    worker in flight; a shard a previous run finished is reused (a damaged one is rebuilt)."""

    def __init__(self, tokenizer: str, chunk_size: int, workers: int, reporter: Reporter) -> None:
        self.tokenizer, self.chunk_size, self.reporter = tokenizer, chunk_size, reporter
        self.window = 2 * max(1, workers)
        self.pool = make_executor("local", workers, _start_worker, (tokenizer,), preload=WORKER_MODULES)
        self.files: list[Path] = []
        self.in_flight: collections.deque = collections.deque()

    def __enter__(self) -> UnitWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        else:
            self.pool.shutdown(wait=True)

    def add(self, out: Path, rows: Callable[[], list[dict]], count: int) -> None:
        """Write the rows `rows()` returns to `out` (`rows` is not called when `out` is finished already)."""
        self.files.append(out)
        if is_finished(out, self.reporter):
            self.reporter.advance("instances", count)
            return
        future = self.pool.submit(write_unit, str(out), rows(), self.tokenizer, self.chunk_size)
        self.in_flight.append((future, count))
        while len(self.in_flight) >= self.window:
            self._collect()

    def _collect(self) -> None:
        future, count = self.in_flight.popleft()
        future.result()
        self.reporter.advance("instances", count)

    def finish(self) -> tuple[list[Path], list[dict]]:
        """Wait for every shard; the shard files in order and their stats."""
        while self.in_flight:
            self._collect()
        return self.files, [json.loads(f.with_suffix(".json").read_text()) for f in self.files]


def parallel_workers(workers: int, documents: int) -> int:
    """`workers` (0: every core), or 1 for a small job: starting worker processes costs seconds each."""
    return 1 if documents < PARALLEL_MIN_DOCUMENTS else resolve_workers(workers)


def passage_rows(documents: Iterable[tuple[str, str]]) -> Iterator[dict]:
    """(id, rendered document) → passage rows; `position` numbers documents that share a title."""
    per_title: collections.Counter = collections.Counter()
    for doc_id, document in documents:
        title, _, text = document.partition("\n")
        yield {
            "passage_id": doc_id,
            "article_id": title,
            "title": title,
            "position": per_title[title],
            "text": text,
            "num_words": len(text.split()),
        }
        per_title[title] += 1


def write_passage_shards(
    folder: Path, rows: Iterable[dict], tokenizer_name: str, reporter: Reporter, stage: str = "passages"
) -> list[Path]:
    """Passage rows (PASSAGE_SCHEMA less ``num_tokens``, counted here) in shards of PASSAGE_SHARD_ROWS."""
    tokenizer = load_tokenizer(tokenizer_name)
    folder.mkdir(parents=True, exist_ok=True)
    outputs: list[Path] = []
    iterator = iter(rows)
    while True:
        block = [row for _, row in zip(range(PASSAGE_SHARD_ROWS), iterator, strict=False)]
        if not block and outputs:
            break
        out = folder / f"passages-{len(outputs):05d}.parquet"
        outputs.append(out)
        if not is_finished(out, reporter):
            for start in range(0, len(block), PASSAGE_TOKEN_BATCH):
                batch = block[start : start + PASSAGE_TOKEN_BATCH]
                counts = count_tokens(tokenizer, [render_document(r["title"], r["text"]) for r in batch])
                for row, n in zip(batch, counts, strict=True):
                    row["num_tokens"] = n
            with atomic_path(out) as tmp:
                pq.write_table(pa.Table.from_pylist(block, schema=PASSAGE_SCHEMA), tmp, compression="zstd")
            write_json_atomic(out.with_suffix(".json"), {"rows": len(block), "file": unit_stats(out)})
        reporter.advance(stage, len(block))
        if len(block) < PASSAGE_SHARD_ROWS:
            break
    return outputs


def instance_summary(files: Sequence[Path]) -> dict:
    """Counts and per-N token statistics (min / mean / max) of instance shards."""
    tokens: dict[int, list[int]] = collections.defaultdict(list)
    labels: collections.Counter = collections.Counter()
    questions: set[str] = set()
    for f in files:
        table = pq.read_table(f, columns=["num_docs", "num_tokens", "answer_label", "question_id"])
        for n, t in zip(table["num_docs"].to_pylist(), table["num_tokens"].to_pylist(), strict=True):
            tokens[n].append(t)
        questions.update(table["question_id"].to_pylist())
        labels.update(table["answer_label"].to_pylist())
    per_length = [
        {
            "num_docs": n,
            "instances": len(values),
            "min_tokens": min(values),
            "mean_tokens": round(sum(values) / len(values), 1),
            "max_tokens": max(values),
        }
        for n, values in sorted(tokens.items())
    ]
    return {
        "episodes": sum(len(v) for v in tokens.values()),
        "questions": len(questions),
        "tokens": sum(sum(v) for v in tokens.values()),
        "lengths": sorted(tokens),
        "per_length": per_length,
        "labels": dict(labels.most_common()),
    }


def shards_per_length(count: int, num_docs: int) -> list[range]:
    size = max(1, SHARD_DOCUMENTS // num_docs)
    return [range(s, min(s + size, count)) for s in range(0, count, size)]


def _existing(root: Path, build_id: str) -> CorpusVersion | None:
    for v in list_versions(root) if root.exists() else []:
        corpus = open_corpus(root / f"v{v}")
        if corpus.manifest.get("build_id") == build_id:
            return corpus
    return None


def _publish(
    root: Path,
    build_id: str,
    passage_files: list[Path],
    episode_files: list[Path],
    config: dict,
    fingerprint: dict,
    extra: dict,
    unit_stats_list: list[dict],
    seconds: float,
) -> CorpusVersion:
    summary = instance_summary(episode_files)
    passages = sum(pq.ParquetFile(f).metadata.num_rows for f in passage_files)
    summary["passages"] = passages
    manifest = {
        "name": root.name,
        "kind": INSTANCE_KIND,
        "task": "hotpotqa",
        "build_id": build_id,
        "schema_version": SCHEMA_VERSION,
        "builder_version": BUILDER_VERSION,
        "memtrain_version": __version__,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "config": config,
        "source": fingerprint,
        "counts": {
            "questions": summary["questions"],
            "episodes": summary["episodes"],
            "passages": passages,
            "tokens": summary["tokens"],
        },
        "summary": summary,
        **extra,
        "stages": {"build": {"seconds": round(seconds, 3)}},
    }
    stats = {"episode_shards": unit_stats_list, "seconds": seconds}
    final = publish_version(root, passage_files, episode_files, manifest, stats)
    return open_corpus(final)


def build_instances(
    questions: Sequence[Question],
    lengths: Iterable[int],
    seed: int,
    out_root: str | os.PathLike,
    name: str,
    tokenizer: str,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    source_fingerprint: dict | None = None,
    *,
    pool: DocumentPool | None = None,
    workers: int = 0,
    reporter: Reporter | None = None,
) -> CorpusVersion:
    """Build the instances of `questions` at every N in `lengths` as the version ``out_root/name/v<K>``.

    `pool` defaults to the pool of `questions`; pass the pool of the whole split when `questions` is a
    selection of it (the first 128 kept questions, say). `tokenizer` (an asset name, a Hub id or a local
    folder: the evaluated model's) counts tokens and cuts chunks of `chunk_size` tokens. The version's
    identity is its source (`source_fingerprint`, see :func:`source_fingerprint`), the questions' and the
    pool's content, the lengths, the seed, the tokenizer and the chunk size: building the same set again
    returns the existing version and does nothing. One build at a time writes `out_root/name`.

    Shards are tokenized in `workers` processes (0: every core; a small set uses this process alone). An
    interrupted build, rerun, redoes only the shards it had not finished; the result is the same.
    """
    reporter = reporter or Reporter()
    questions = list(questions)
    if not questions:
        raise ConfigError("no questions to build instances from")
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be at least 1 token, got {chunk_size}")
    pool = pool if pool is not None else DocumentPool.from_questions(questions)
    lengths = check_lengths(questions, pool, lengths)
    fingerprint = source_fingerprint or {"kind": "questions", "files": []}
    unit_payload = {
        "builder": BUILDER_VERSION,
        "schema": SCHEMA_VERSION,
        "chunker": RULE_VERSION,
        "seed": int(seed),
        "questions": questions_digest(questions),
        "pool": pool.digest,
        "tokenizer": tokenizer,
        "chunk_size": chunk_size,
        "shard_documents": SHARD_DOCUMENTS,
    }
    unit_id = _identity(unit_payload)
    build_id = _identity({"units": unit_id, "lengths": lengths, "source": source_key(fingerprint)})
    root = check_writable_output(Path(out_root) / name, kind="dir", what="out_root")
    with exclusive_lock(root, "building these instances"):
        remove_temporaries(root)
        existing = _existing(root, build_id)
        if existing is not None:
            return existing
        start = time.perf_counter()
        load_tokenizer(tokenizer)  # a bad name fails before any work
        cache = root / ".cache"
        pool_dir = cache / f"pool-{_identity({'pool': pool.digest, 'tokenizer': tokenizer})}"
        reporter.start("passages", total=len(pool), unit="documents")
        documents = zip(pool.ids, pool.documents, strict=True)
        passage_files = write_passage_shards(pool_dir, passage_rows(documents), tokenizer, reporter)
        reporter.finish("passages")

        unit_dir = cache / f"instances-{unit_id}"
        reporter.start("instances", total=len(questions) * len(lengths), unit="instances")
        documents_to_render = len(questions) * sum(lengths)
        writer = UnitWriter(tokenizer, chunk_size, parallel_workers(workers, documents_to_render), reporter)
        with writer:
            for num_docs in lengths:
                for k, part in enumerate(shards_per_length(len(questions), num_docs)):

                    def rows(part=part, num_docs=num_docs) -> list[dict]:
                        return [build_instance(questions[i], pool, num_docs, seed) for i in part]

                    writer.add(unit_dir / f"n{num_docs:06d}-{k:05d}.parquet", rows, len(part))
            episode_files, stats = writer.finish()
        reporter.finish("instances")
        config = {
            "task": "hotpotqa",
            "builder": "memtrain",
            "lengths": lengths,
            "seed": int(seed),
            "questions": len(questions),
            "pool_size": len(pool),
            "tokenizer": tokenizer,
            "chunk_size": chunk_size,
            "shard_documents": SHARD_DOCUMENTS,
            "document_template": DOCUMENT_TEMPLATE,
        }
        extra = {"questions_sha256": unit_payload["questions"], "pool_sha256": pool.digest}
        return _publish(
            root,
            build_id,
            passage_files,
            episode_files,
            config,
            fingerprint,
            extra,
            stats,
            time.perf_counter() - start,
        )


# --- reading instance sets --------------------------------------------------------------------------------


def instance_lengths(corpus: CorpusVersion) -> list[int]:
    """The lengths N an instance set holds (from its manifest)."""
    lengths = (corpus.manifest.get("summary") or {}).get("lengths")
    if not isinstance(lengths, list) or not all(isinstance(n, int) for n in lengths):
        raise InputError(corpus.manifest_path, "not a HotpotQA instance set (no summary.lengths)")
    return lengths


def read_instances(
    corpus: CorpusVersion | str | os.PathLike,
    lengths: Iterable[int] | None = None,
    limit: int | None = None,
    columns: Sequence[str] | None = None,
) -> Iterator[dict]:
    """Stream instance rows, N ascending then question order, one row group (a few instances) at a time.

    `lengths` keeps those N (row groups of other N are skipped from their statistics, never read); `limit`
    keeps the first `limit` instances of every N (the same questions at every N); `columns` reads only
    those (``num_docs`` is always included)."""
    corpus = corpus if isinstance(corpus, CorpusVersion) else open_corpus(corpus)
    wanted = None if lengths is None else sorted({int(n) for n in lengths})
    if wanted is not None and (missing := [n for n in wanted if n not in instance_lengths(corpus)]):
        raise MemtrainError(
            f"{corpus.path}: has no instances at N={missing[0]} (lengths: "
            f"{', '.join(map(str, instance_lengths(corpus)))})"
        )
    if columns is not None:
        columns = list(dict.fromkeys([*columns, "num_docs"]))
    seen: collections.Counter = collections.Counter()
    for file in corpus.episode_files():
        if limit is not None and wanted is not None and all(seen[n] >= limit for n in wanted):
            return
        try:
            parquet = pq.ParquetFile(file)
            leaf = _leaf_index(parquet, "num_docs")
            if leaf is None:
                raise InputError(file, "not a HotpotQA instance shard (no column 'num_docs')")
            for group in range(parquet.num_row_groups):
                stats = parquet.metadata.row_group(group).column(leaf).statistics
                if (
                    wanted is not None
                    and stats is not None
                    and stats.has_min_max
                    and not any(stats.min <= n <= stats.max for n in wanted)
                ):
                    continue
                table = parquet.read_row_group(group, columns=columns)
                if wanted is not None:
                    table = table.filter(pc.is_in(table["num_docs"], pa.array(wanted, pa.int32())))
                for batch in table.to_batches(max_chunksize=4):
                    for row in batch.to_pylist():
                        n = row["num_docs"]
                        if limit is not None and seen[n] >= limit:
                            continue
                        seen[n] += 1
                        yield row
        except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError
            raise InputError(file, f"cannot read shard ({short_reason(exc)})") from None


def _leaf_index(parquet: pq.ParquetFile, name: str) -> int | None:
    schema = parquet.metadata.schema
    for i in range(len(schema)):
        if schema.column(i).path == name:
            return i
    return None


def parse_lengths(text: str | Iterable[int]) -> list[int]:
    """ "50,100,200" (or numbers) → sorted distinct lengths; a bad value is a ConfigError naming it."""
    items = text.split(",") if isinstance(text, str) else list(text)
    lengths = []
    for item in items:
        s = str(item).strip().replace("_", "")
        if not s:
            continue
        if not s.isdigit() or int(s) < 1:
            raise ConfigError(
                f"lengths: {str(item).strip()!r} is not a number of documents (e.g. 50,100,200)"
            )
        lengths.append(int(s))
    if not lengths:
        raise ConfigError("lengths: none given (numbers of documents, e.g. 50,100,200)")
    return sorted(set(lengths))


# --- MemAgent's released evaluation files ----------------------------------------------------------------

MEMAGENT_FILE = re.compile(r"^eval_(\d+)\.jsonl?$")
MEMAGENT_FIELDS = ("context", "input", "answers", "num_docs", "index")


def memagent_files_in(folder: Path) -> dict[int, Path]:
    """N → ``eval_{N}.json`` in a folder (``eval_{subset}_{tokens}.json`` RULER files are not HotpotQA)."""
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return {}
    found = {}
    for p in entries:
        m = MEMAGENT_FILE.match(p.name)
        if m and p.is_file():
            found.setdefault(int(m.group(1)), p)
    return dict(sorted(found.items()))


def is_memagent_source(path: str | os.PathLike) -> bool:
    """A folder holding eval_{N}.json files, or one such file."""
    path = Path(path)
    if path.is_dir():
        return bool(memagent_files_in(path))
    return path.is_file() and bool(MEMAGENT_FILE.match(path.name))


def memagent_files(path: str | os.PathLike, lengths: Iterable[int] | None = None) -> dict[int, Path]:
    """N → file: a folder's ``eval_{N}.json`` files (those of `lengths` only), or one file (N from its name,
    else from its records)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file or folder")
    if path.is_dir():
        found = memagent_files_in(path)
        if not found:
            raise InputError(path, "no MemAgent evaluation file (eval_{N}.json) in this folder")
        if lengths is None:
            return found
        wanted = sorted({int(n) for n in lengths})
        missing = [n for n in wanted if n not in found]
        if missing:
            raise InputError(
                path,
                f"no eval_{missing[0]}.json for N={missing[0]} (found N = {', '.join(map(str, found))})",
            )
        return {n: found[n] for n in wanted}
    m = MEMAGENT_FILE.match(path.name)
    if m:
        n = int(m.group(1))
    else:
        first = next(iter_records(path), None)
        if first is None:
            raise InputError(path, "no records")
        n = _memagent_fields(first[1], 0, path)["num_docs"]
    if lengths is not None and n not in {int(x) for x in lengths}:
        raise InputError(path, f"holds N={n}, not the lengths asked for ({', '.join(map(str, lengths))})")
    return {n: path}


def _memagent_fields(record: Any, n: int, path: Path) -> dict:
    where = f"record {n}"
    if not isinstance(record, Mapping):
        raise InputError(path, f"{where}: not an object but a {type(record).__name__}")
    missing = [f for f in MEMAGENT_FIELDS if f not in record]
    if missing:
        raise InputError(
            path,
            f"{where}: missing field(s) {', '.join(repr(f) for f in missing)} "
            f"(a MemAgent evaluation record has {', '.join(MEMAGENT_FIELDS)})",
        )
    index, num_docs = record["index"], record["num_docs"]
    for key, value in (("index", index), ("num_docs", num_docs)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InputError(path, f"{where}: field {key!r} is not a non-negative integer")
    where = f"record {n} (index {index})"
    context = record["context"]
    if isinstance(context, list):
        raise InputError(
            path,
            f"{where}: 'context' is a list of document numbers (MemAgent's index-only form for N > 10000), "
            "not the rendered documents; build that N with memtrain's builder instead",
        )
    if not isinstance(context, str):
        raise InputError(path, f"{where}: field 'context' is not a string")
    if not isinstance(record["input"], str) or not record["input"].strip():
        raise InputError(path, f"{where}: field 'input' (the question) is not a non-empty string")
    answers = record["answers"]
    answers = [answers] if isinstance(answers, str) else answers
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise InputError(path, f"{where}: field 'answers' is not a non-empty list of strings")
    return {
        "context": context,
        "input": record["input"],
        "answers": answers,
        "num_docs": num_docs,
        "index": index,
    }


def split_blocks(context: str, num_docs: int) -> tuple[list[int], list[str]]:
    """The start of each ``Document i:`` block (i = 1..num_docs) and each document, or ValueError."""
    starts, documents = [], []
    if not context.startswith(DOCUMENT_TEMPLATE.format(i=1, document="")):
        raise ValueError("'context' does not start with 'Document 1:'")
    position = 0
    for i in range(1, num_docs + 1):
        header = DOCUMENT_TEMPLATE.format(i=i, document="")
        if i > 1:
            found = context.find(DOCUMENT_SEPARATOR + header, position)
            if found < 0:
                raise ValueError(f"'context' has no 'Document {i}:' block, but num_docs is {num_docs}")
            documents[-1] = context[starts[-1] + len(DOCUMENT_TEMPLATE.format(i=i - 1, document="")) : found]
            position = found + len(DOCUMENT_SEPARATOR)
        starts.append(position)
        documents.append("")
    last_header = len(DOCUMENT_TEMPLATE.format(i=num_docs, document=""))
    documents[-1] = context[starts[-1] + last_header :]
    extra = DOCUMENT_SEPARATOR + DOCUMENT_TEMPLATE.format(i=num_docs + 1, document="")
    if extra in context[starts[-1] :]:
        raise ValueError(f"'context' has more than num_docs={num_docs} 'Document i:' blocks")
    return starts, documents


def iter_memagent_instances(
    path: str | os.PathLike,
    lengths: Iterable[int] | None = None,
    questions: Sequence[Question] | None = None,
    on_document: Callable[[str, str], None] | None = None,
) -> Iterator[dict]:
    """MemAgent's records as instance rows (all :data:`INSTANCE_SCHEMA` columns but the token-dependent ones),
    N ascending, each file streamed. ``text`` is the record's ``context`` unchanged (exact parity).

    Without `questions` the rows have ``question_id`` ``memagent-{index}``, role ``document`` and no
    question type. With `questions` (HotpotQA dev, loaded whole, in order: MemAgent's ``index`` is the dev
    position) each record is joined to its question (checked by its text): ``question_id`` is HotpotQA's
    ``_id`` and documents get roles gold/context/pad. `on_document(id, document)` sees every document."""
    by_index = {q.index: q for q in questions} if questions is not None else None
    for num_docs, file in memagent_files(path, lengths).items():
        for n, record in iter_records(file):
            fields = _memagent_fields(record, n, file)
            where = f"record {n} (index {fields['index']})"
            if fields["num_docs"] != num_docs:
                raise InputError(
                    file, f"{where}: num_docs is {fields['num_docs']}, but the file holds N={num_docs}"
                )
            try:
                starts, documents = split_blocks(fields["context"], num_docs)
            except ValueError as exc:
                raise InputError(file, f"{where}: {exc}") from None
            ids = [document_id(d) for d in documents]
            if on_document is not None:
                for doc_id, document in zip(ids, documents, strict=True):
                    on_document(doc_id, document)
            if by_index is None:
                question = Question(
                    f"memagent-{fields['index']}",
                    fields["input"],
                    fields["answers"],
                    "",
                    [],
                    [],
                    fields["index"],
                )
                roles = [ROLE_DOCUMENT] * num_docs
            else:
                question = by_index.get(fields["index"])
                if question is None or question.question.strip() != fields["input"].strip():
                    found = "no question" if question is None else f"question {question.question_id!r}"
                    raise InputError(
                        file,
                        f"{where}: its question is not the loaded set's {found} at index {fields['index']} "
                        "(join with HotpotQA dev loaded whole, in its order)",
                    )
                question = Question(
                    question.question_id,
                    fields["input"],
                    fields["answers"],
                    question.type,
                    question.paragraphs,
                    question.supporting_titles,
                    question.index,
                )
                own = set(question.documents)
                supporting = set(question.supporting_titles)
                roles = [
                    (ROLE_GOLD if d.split("\n", 1)[0] in supporting else ROLE_CONTEXT)
                    if d in own
                    else ROLE_PAD
                    for d in documents
                ]
            yield instance_row(question, num_docs, fields["context"], ids, roles, starts)


def build_memagent_instances(
    path: str | os.PathLike,
    out_root: str | os.PathLike,
    name: str,
    tokenizer: str,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    lengths: Iterable[int] | None = None,
    questions: Sequence[Question] | None = None,
    *,
    workers: int = 0,
    reporter: Reporter | None = None,
) -> CorpusVersion:
    """MemAgent's ``eval_{N}.json`` instances (a folder, or one file) as a corpus version, unchanged: the
    same columns as :func:`build_instances` writes, the distinct documents as the ``passages`` table. The
    identity is the files' sha256, the lengths, the tokenizer, the chunk size and the joined questions."""
    reporter = reporter or Reporter()
    files = memagent_files(path, lengths)
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be at least 1 token, got {chunk_size}")
    root = check_writable_output(Path(out_root) / name, kind="dir", what="out_root")
    with exclusive_lock(root, "building these instances"):
        remove_temporaries(root)
        fingerprint = {
            "source": str(path),
            "kind": "memagent",
            "files": [_cached_file_record(f, root / ".cache") for f in files.values()],
        }
        unit_payload = {
            "builder": BUILDER_VERSION,
            "schema": SCHEMA_VERSION,
            "chunker": RULE_VERSION,
            "memagent": True,
            "questions": questions_digest(questions) if questions is not None else None,
            "tokenizer": tokenizer,
            "chunk_size": chunk_size,
            "shard_documents": SHARD_DOCUMENTS,
        }
        unit_id = _identity(unit_payload)
        build_id = _identity({"units": unit_id, "source": source_key(fingerprint), "lengths": sorted(files)})
        existing = _existing(root, build_id)
        if existing is not None:
            return existing
        start = time.perf_counter()
        load_tokenizer(tokenizer)
        documents: dict[str, str] = {}

        def remember(doc_id: str, document: str) -> None:
            documents.setdefault(doc_id, document)

        unit_dir = root / ".cache" / f"memagent-{unit_id}"
        reporter.start("instances", total=None, unit="instances")
        size_bytes = sum(record["size"] for record in fingerprint["files"])
        # about 700 bytes per rendered document: the same threshold as the builder's
        workers = parallel_workers(workers, size_bytes // 700)
        with UnitWriter(tokenizer, chunk_size, workers, reporter) as writer:
            for (num_docs, file), record in zip(files.items(), fingerprint["files"], strict=True):
                prefix = f"{record['sha256'][:16]}-n{num_docs:06d}"
                size = max(1, SHARD_DOCUMENTS // num_docs)
                pending: list[dict] = []
                parts = 0
                for row in iter_memagent_instances(file, [num_docs], questions, on_document=remember):
                    pending.append(row)
                    if len(pending) == size:
                        out = unit_dir / f"{prefix}-{parts:05d}.parquet"
                        writer.add(out, lambda rows=pending: rows, len(pending))
                        parts += 1
                        pending = []
                if pending:
                    writer.add(
                        unit_dir / f"{prefix}-{parts:05d}.parquet", lambda rows=pending: rows, len(pending)
                    )
                    parts += 1
                if parts == 0:
                    raise InputError(file, "no records")
            episode_files, stats = writer.finish()
        reporter.finish("instances")
        reporter.start("passages", total=len(documents), unit="documents")
        passage_dir = root / ".work" / build_id / "passages"
        shutil.rmtree(passage_dir, ignore_errors=True)
        passage_files = write_passage_shards(
            passage_dir, passage_rows(documents.items()), tokenizer, reporter
        )
        reporter.finish("passages")
        config = {
            "task": "hotpotqa",
            "builder": "memagent",
            "lengths": sorted(files),
            "questions_joined": questions is not None,
            "tokenizer": tokenizer,
            "chunk_size": chunk_size,
            "shard_documents": SHARD_DOCUMENTS,
        }
        extra = {"questions_sha256": unit_payload["questions"]}
        corpus = _publish(
            root, build_id, passage_files, episode_files, config, fingerprint, extra, stats,
            time.perf_counter() - start,
        )  # fmt: skip
        shutil.rmtree(root / ".work" / build_id, ignore_errors=True)
        return corpus


def _cached_file_record(path: Path, cache: Path) -> dict:
    """A file's path, size and sha256, the hash remembered by (path, size, mtime) so large files hash once."""
    stat = path.stat()
    key = hashlib.sha1(json.dumps([str(path.resolve()), stat.st_size, stat.st_mtime_ns]).encode()).hexdigest()
    remembered = cache / "checksums" / f"{key}.json"
    if remembered.exists():
        try:
            return json.loads(remembered.read_text())
        except (OSError, ValueError):
            pass
    record = {"path": str(path.resolve()), "size": stat.st_size, "sha256": file_sha256(path)}
    write_json_atomic(remembered, record)
    return record


def fetch_memagent_files(
    lengths: Iterable[int] = DEFAULT_LENGTHS, repo_id: str = MEMAGENT_HUB_ID, revision: str | None = None
) -> Path:
    """Download MemAgent's ``eval_{N}.json`` files from the Hub (``huggingface_hub.snapshot_download``, into
    its cache); returns the folder holding them, for :func:`build_memagent_instances`."""
    from huggingface_hub import snapshot_download

    patterns = [f"eval_{int(n)}.json" for n in lengths]
    try:
        folder = Path(
            snapshot_download(repo_id, repo_type="dataset", revision=revision, allow_patterns=patterns)
        )
    except Exception as exc:  # network, not found, gated
        raise MemtrainError(
            f"{repo_id}: cannot download MemAgent's evaluation files ({short_reason(exc)})"
        ) from None
    return folder


# --- the no-context filter's bookkeeping ----------------------------------------------------------------


def no_context_prompt(question: str) -> str:
    """MemAgent's no-context filter prompt for one question."""
    return NO_CONTEXT_PROMPT.format(question=question)


def save_kept_ids(path: str | os.PathLike, ids: Iterable[str], **meta: Any) -> Path:
    """Write the ids the no-context filter kept (atomically), with any settings worth recording in `meta`
    (model, samples, sampling, data checksum): ``{"kept": [...], "count": n, ...meta}``."""
    kept = [str(i) for i in ids]
    path = Path(path)
    write_json_atomic(path, {**meta, "kept": kept, "count": len(kept)})
    return path


def load_kept_ids(path: str | os.PathLike) -> list[str]:
    """The ids :func:`save_kept_ids` wrote (a plain JSON list of ids is read too)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not valid JSON ({short_reason(exc)})") from None
    except OSError as exc:
        raise InputError(path, f"cannot read the file ({exc.strerror or exc})") from None
    kept = data.get("kept") if isinstance(data, dict) else data
    if not isinstance(kept, list) or not all(isinstance(i, str) for i in kept):
        raise InputError(path, 'not a kept-ids file: expected {"kept": [question ids]}')
    return kept


def apply_kept_ids(questions: Sequence[Question], ids: Iterable[str]) -> list[Question]:
    """The questions whose id is in `ids`, in the questions' order; an id that no question has means the ids
    were saved for other data, and is refused."""
    kept = set(ids)
    known = {q.question_id for q in questions}
    unknown = sorted(kept - known)
    if unknown:
        raise MemtrainError(
            f"{len(unknown)} kept id(s) are not in the loaded questions (e.g. {unknown[0]!r}): "
            "the filter was run on other data"
        )
    return [q for q in questions if q.question_id in kept]
