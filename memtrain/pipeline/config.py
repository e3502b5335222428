"""`CorpusConfig`: every knob of `memtrain build-corpus`, with the paper's values as defaults."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from ..errors import ConfigError
from .episodes import LENGTH_DISTRIBUTIONS
from .executors import EXECUTORS

DEFAULT_NER_LABELS = [
    "PERSON", "ORG", "GPE", "LOC", "DATE", "NORP", "EVENT", "WORK_OF_ART", "FAC", "PRODUCT", "CARDINAL",
]  # fmt: skip


@dataclass
class CorpusConfig:
    name: str = field(default="enwiki", metadata={"help": "Corpus name: output goes to OUT/<name>/v<N>/."})
    source: str | None = field(
        default=None,
        metadata={
            "help": "Wikipedia dump (.xml, .xml.bz2, multistream .bz2), parquet file/folder in the HF "
            "wikimedia/wikipedia layout, a datasets id, or JSONL. None = the embedded English excerpt."
        },
    )
    seed: int = field(default=0, metadata={"help": "Episode i is drawn from the RNG seeded by (seed, i)."})
    num_episodes: int = field(default=30000, metadata={"help": "Episodes to build (paper: 30k documents)."})
    passage_words: int = field(default=100, metadata={"help": "Words per DPR-style passage."})
    num_related: int = field(default=29, metadata={"help": "Retrieved passages most related to the pivot."})
    num_random: int = field(
        default=120,
        metadata={
            "help": "Random passages to start from; more are added while the document is shorter than its "
            "target length (see length_distribution), some removed while it is longer."
        },
    )
    min_tokens: int = field(default=24000, metadata={"help": "Shortest document, in tokens of `tokenizer`."})
    max_tokens: int = field(default=40000, metadata={"help": "Longest document, in tokens of `tokenizer`."})
    length_distribution: str = field(
        default="uniform",
        metadata={
            "help": "How each episode's target length is drawn from [min_tokens, max_tokens] (less 1% of "
            "max_tokens at the top, 0.25% at the bottom) with the episode's seed: 'uniform', or 'shortest' "
            "(always the low end)."
        },
    )
    tokenizer: str = field(
        default="smollm2-135m-instruct",
        metadata={
            "help": "Tokenizer that counts tokens and cuts chunks: an asset name, Hub id or local folder."
        },
    )
    chunk_size: int = field(default=5120, metadata={"help": "Chunk size in tokens (paper: 5120)."})
    retriever: str = field(default="bm25", metadata={"help": "Related-passage retriever: 'bm25' (bm25s)."})
    index_shard_passages: int = field(
        default=0,
        metadata={
            "help": "0: one BM25 index over all passages. N: shards of N consecutive passages, each its own "
            "index with its own statistics, built one after another (a build then holds one shard's index in "
            "memory, ~2.6 GiB per million passages) and queried together. For collections too large to index "
            "at once (full Wikipedia: e.g. 4000000)."
        },
    )
    ner_model: str = field(
        default="en_core_web_sm",
        metadata={"help": "spaCy pipeline: the en_core_web_sm asset, an installed package name, or a path."},
    )
    ner_labels: list[str] = field(
        default_factory=lambda: list(DEFAULT_NER_LABELS),
        metadata={"help": "spaCy entity labels admissible as the masked answer."},
    )
    min_mask_occurrences: int = field(
        default=2,
        metadata={"help": "The answer must occur at least this often in the document (evidence to gather)."},
    )
    max_pivot_tries: int = field(default=50, metadata={"help": "Pivots tried per episode before giving up."})
    episodes_per_shard: int = field(
        default=250, metadata={"help": "Episodes per Parquet shard (and per NER round; bounds memory)."}
    )
    ner_batch_size: int = field(
        default=256,
        metadata={
            "help": "Passages per NER task and spaCy nlp.pipe batch (fewer when a round has too few passages "
            "to give every worker one)."
        },
    )
    ner_processes: int | None = field(
        default=None,
        metadata={"help": "Deprecated and ignored: NER runs in the `workers` processes (or on Ray)."},
    )
    workers: int = field(
        default=0,
        metadata={
            "help": "Local worker processes that run spaCy NER, read and clean pages and mask episodes "
            "(0 = all cores, 1 = everything in this process). Not used on Ray, where the cluster's CPUs "
            "decide."
        },
    )
    ner_cpus_per_worker: int = field(
        default=1,
        metadata={"help": "executor 'ray': CPUs Ray reserves for each NER task (one spaCy pipeline each)."},
    )
    executor: str = field(
        default="local",
        metadata={
            "help": "Where parallel work runs: 'local' (process pools on this machine) or 'ray' (Ray tasks "
            "on the cluster RAY_ADDRESS names; source and OUT on storage every node sees)."
        },
    )
    streams_per_shard: int = field(
        default=100, metadata={"help": "Multistream dumps: bz2 streams (100 pages each) per read shard."}
    )
    hf_split: str = field(default="train", metadata={"help": "Split, for a datasets id source."})
    hf_name: str | None = field(default=None, metadata={"help": "Config name, for a datasets id source."})

    def __post_init__(self) -> None:
        positive = [
            "num_episodes", "passage_words", "min_tokens", "max_tokens", "chunk_size", "max_pivot_tries",
            "episodes_per_shard", "ner_batch_size", "ner_cpus_per_worker", "streams_per_shard",
            "min_mask_occurrences",
        ]  # fmt: skip
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be at least 1, got {getattr(self, key)}")
        for key in ("num_related", "num_random", "workers", "seed", "index_shard_passages"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must not be negative, got {getattr(self, key)}")
        if self.ner_processes is not None:
            warnings.warn(
                "ner_processes is deprecated and ignored: NER now runs in the `workers` processes "
                "(set workers: N instead; on Ray, the cluster's CPUs); drop the key",
                FutureWarning,
                stacklevel=3,
            )
        if self.min_tokens > self.max_tokens:
            raise ConfigError(f"min_tokens ({self.min_tokens}) is larger than max_tokens ({self.max_tokens})")
        if not self.ner_labels:
            raise ConfigError("ner_labels is empty: no entity could ever be masked")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"executor {self.executor!r} is unknown; available: {', '.join(EXECUTORS)}")
        if self.length_distribution not in LENGTH_DISTRIBUTIONS:
            raise ConfigError(
                f"length_distribution {self.length_distribution!r} is unknown; available: "
                f"{', '.join(LENGTH_DISTRIBUTIONS)}"
            )
        if self.retriever != "bm25":
            raise ConfigError(f"retriever {self.retriever!r} is unknown; available: bm25")
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ConfigError(f"name {self.name!r} must be a plain folder name")

    # Fields that change how the build runs, not what it produces: they do not make a new version.
    RUNTIME_FIELDS = (
        "workers", "executor", "ner_batch_size", "ner_processes", "ner_cpus_per_worker", "episodes_per_shard",
        "streams_per_shard",
    )  # fmt: skip


PRESETS: dict[str, dict] = {
    "paper": {},
    # A CPU demo: short documents the SmolLM2 agent reads in 3-8 chunks of 512 tokens.
    "tiny": {
        "num_episodes": 16,
        "num_related": 5,
        "num_random": 14,
        "min_tokens": 1500,
        "max_tokens": 4000,
        "chunk_size": 512,
        "episodes_per_shard": 8,
        "workers": 1,  # 16 episodes from one file: starting worker processes would cost more than it saves
    },
}
