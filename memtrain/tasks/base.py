"""Tasks: what the memory agent reads, what it is asked, and how its answer is scored, behind one interface.

A :class:`Task` says

- where its episodes come from: :meth:`Task.training_corpus` gives the corpus version that training streams
  (and whose first ``held_out_episodes`` rows, by ``index``, are the held-out evaluation set);
  :attr:`Task.columns` are the columns of an episode row the agent reads, :meth:`Task.schema` their types;
- the problem of a row (:meth:`Task.problem`) and its gold answers (:meth:`Task.answers`);
- the score of the final ``\\boxed{}`` answer, which is also the end-to-end reward
  (:attr:`Task.answer_metric`, a name in ``memtrain.trainer.rewards.METRICS``; :meth:`Task.score`);
- whether the intermediate-memory-recall probe applies (:attr:`Task.recall`: the rows carry entity spans);
- how an episode is rolled out (:meth:`Task.rollout`: both tasks here use the memory agent).

``memtrain rollout``, ``memtrain train`` and evaluation read episodes through this interface, so a new task
(search QA, say) is a new entry in :data:`TASKS`, not a change to the trainer.

- ``masked-entity``: MemTrain's self-supervised pretraining task. Rows of a ``memtrain build-corpus`` corpus:
  a Wikipedia document with one entity replaced by ``[MASK]``; the problem asks which entity it is; entity
  spans make the recall probe possible.
- ``hotpotqa``: long-document QA post-training, MemAgent's recipe. Rows of a HotpotQA instance set
  (``memtrain.tasks.hotpotqa``): the question's paragraphs padded with other HotpotQA paragraphs to
  ``num_docs`` documents; the problem is the question; no entity spans, so no recall probe.

This module imports nothing heavy; the corpus, the instance builder and the agent load when used.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ConfigError, MemtrainError
from ..trainer import prompts, rewards

if TYPE_CHECKING:
    import pyarrow as pa

    from ..corpus import CorpusVersion
    from ..trainer.config import TrainConfig
    from ..trainer.types import Trajectory

MASKED_ENTITY = "masked-entity"
HOTPOTQA = "hotpotqa"
SEARCH_QA = "search-qa"


def episode_name(row: Mapping[str, Any]) -> str:
    return str(row.get("episode_id", row.get("index", "?")))


def gold_answers(row: Mapping[str, Any]) -> list[str]:
    """The gold answers of an episode row: ``answer`` first, then the other aliases of ``answers``."""
    answers = row.get("answers")
    answers = [str(a) for a in answers] if answers is not None and not isinstance(answers, str) else []
    answer = row.get("answer")
    if isinstance(answer, str):
        answers = [answer, *[a for a in answers if a != answer]]
    if not answers:
        raise MemtrainError(f"episode {episode_name(row)}: needs a gold 'answer' (or a list 'answers')")
    return answers


def row_problem(row: Mapping[str, Any], default: str | None) -> str:
    """The problem an episode row asks: its own ``problem`` field, else `default`."""
    problem = row.get("problem") or default
    if not problem:
        raise MemtrainError(f"episode {episode_name(row)}: has no 'problem' and its task gives none")
    return str(problem)


def built_before(config: TrainConfig) -> CorpusVersion | None:
    """The corpus version `corpus` (with `corpus_version`) names when it is data built before, opened; None
    when `corpus` is the folder a task builds its data in."""
    from ..corpus import is_version_dir, open_corpus

    if config.corpus_version is None and not is_version_dir(Path(config.corpus)):
        return None
    try:
        return open_corpus(config.corpus, config.corpus_version)
    except MemtrainError as exc:
        raise ConfigError(f"corpus: {exc}") from None


class Task(ABC):
    """One task; see the module docstring. Subclasses set the class attributes and `training_corpus`."""

    name: ClassVar[str]
    description: ClassVar[str]
    columns: ClassVar[tuple[str, ...]]  # what the agent reads of an episode row
    answer_metric: ClassVar[str] = "em"  # the default score of the final answer (the E2E reward)
    recall: ClassVar[bool] = False  # rows carry entity spans: the recall probe (IMR) applies
    default_problem: ClassVar[str | None] = None  # the problem of rows without their own
    builds_corpus: ClassVar[bool] = False  # training_corpus builds data: one process does it
    eval_sampling: ClassVar[tuple[float, float]] = (0.7, 0.95)  # held-out temperature, top_p (MemAgent's)

    def problem(self, row: Mapping[str, Any]) -> str:
        return row_problem(row, self.default_problem)

    def answers(self, row: Mapping[str, Any]) -> list[str]:
        return gold_answers(row)

    def score(self, prediction: str | None, gold: str | Sequence[str], metric: str | None = None) -> float:
        """`prediction` (the last ``\\boxed{}``, None when there was none) against the gold answers."""
        return rewards.METRICS[metric or self.answer_metric](prediction, gold)

    @abstractmethod
    def schema(self) -> pa.Schema:
        """The Arrow types of :attr:`columns` (the training stream's features)."""

    def check(self, config: TrainConfig) -> None:
        """ConfigError for a training config this task cannot run; reads no data, loads no model."""
        if config.recall and not self.recall:
            raise ConfigError(
                f"recall: the {self.name} task has no entity spans for the recall probe; set recall: false"
            )

    @abstractmethod
    def training_corpus(self, config: TrainConfig, tokenizer: str) -> CorpusVersion:
        """The corpus version training streams its episodes from (built first when the task builds data).

        `tokenizer` names the trained model's tokenizer (token counts and chunks of built data)."""

    def configured(self, config: TrainConfig) -> Task:
        """This task as one training run uses it (a task holding run state, e.g. a retriever, returns a new
        instance carrying it; the others return themselves)."""
        return self

    def rollout(
        self, episodes: Sequence[Mapping[str, Any]], backend: Any, config: Any, **kwargs
    ) -> list[Trajectory]:
        """The trajectories of `episodes` (``memtrain.trainer.agent.rollout``'s arguments and result)."""
        from ..trainer.agent import rollout

        return rollout(episodes, backend, config, **kwargs)


class MaskedEntityTask(Task):
    name = MASKED_ENTITY
    description = "MemTrain's pretraining: name the entity replaced by [MASK] in a Wikipedia document"
    columns = ("episode_id", "index", "text", "answer", "entities")
    recall = True
    default_problem = prompts.MEMTRAIN_PROBLEM

    def schema(self) -> pa.Schema:
        import pyarrow as pa

        from ..pipeline.schema import EPISODE_SCHEMA

        return pa.schema([EPISODE_SCHEMA.field(c) for c in self.columns])

    def check(self, config: TrainConfig) -> None:
        super().check(config)
        if not config.corpus:
            raise ConfigError("corpus: not set; give the folder `memtrain build-corpus` wrote (corpus=PATH)")
        if not Path(config.corpus).exists():
            raise ConfigError(f"corpus: {config.corpus}: no such corpus folder")

    def training_corpus(self, config: TrainConfig, tokenizer: str) -> CorpusVersion:
        from ..corpus import open_corpus

        try:
            return open_corpus(config.corpus, config.corpus_version)
        except MemtrainError as exc:
            raise ConfigError(f"corpus: {exc}") from None


class HotpotQATask(Task):
    name = HOTPOTQA
    description = "long-document QA: answer a HotpotQA question from its paragraphs among num_docs documents"
    columns = ("episode_id", "index", "text", "answer", "answers", "problem")
    builds_corpus = True
    train_split = "train"  # MemAgent post-trains on HotpotQA train; memtrain eval reads the dev split

    def schema(self) -> pa.Schema:
        import pyarrow as pa

        from .hotpotqa import INSTANCE_SCHEMA

        return pa.schema([INSTANCE_SCHEMA.field(c) for c in self.columns])

    def check(self, config: TrainConfig) -> None:
        from .hotpotqa import looks_like_path

        super().check(config)
        if not config.corpus:
            raise ConfigError(
                "corpus: not set; give the folder the HotpotQA training instances are built in "
                "(corpus=corpora/hotpotqa-train), or a version folder of instances built before"
            )
        if config.num_docs < 1:
            raise ConfigError(f"num_docs must be at least 1 document, got {config.num_docs}")
        if config.max_questions is not None and config.max_questions < 1:
            raise ConfigError(f"max_questions must be at least 1 (or unset: all), got {config.max_questions}")
        if config.data and looks_like_path(config.data) and not Path(config.data).exists():
            raise ConfigError(f"data: {config.data}: no such file")

    def training_corpus(self, config: TrainConfig, tokenizer: str) -> CorpusVersion:
        """A version folder (or `corpus_version`) of instances built before is used as it is; otherwise the
        instances of `max_questions` questions of `data` at `num_docs` documents are built under `corpus`
        (reused when an identical build is there)."""
        from ..corpus import MANIFEST_NAME, corpora_in, is_version_dir, list_versions, read_manifest
        from . import hotpotqa

        root = Path(config.corpus)
        if (corpus := built_before(config)) is not None:
            self._check_instances(corpus, config.num_docs)
            return corpus
        if root.is_dir() and (inside := corpora_in(root)):
            raise ConfigError(
                f"corpus: {root} is a folder of corpora ({', '.join(p.name for p in inside)}); give a folder "
                f"of its own for the HotpotQA training instances, e.g. {root / 'hotpotqa-train'}"
            )
        for version in list_versions(root) if root.is_dir() else []:
            if not is_version_dir(root / f"v{version}"):
                continue
            kind = read_manifest(root / f"v{version}" / MANIFEST_NAME).get("kind")
            if kind != hotpotqa.INSTANCE_KIND:
                raise ConfigError(
                    f"corpus: {root} holds another kind of corpus (v{version}: {kind or 'masked-entity'}); "
                    "give a folder of its own for the HotpotQA training instances"
                )
        source = config.data or hotpotqa.DEFAULT_HUB_ID
        try:
            questions = hotpotqa.load_questions(source, split=config.data_split)
        except MemtrainError as exc:
            raise ConfigError(f"data: {exc}") from None
        pool = hotpotqa.DocumentPool.from_questions(
            questions
        )  # the whole split's paragraphs pad every instance
        selected = questions[: config.max_questions] if config.max_questions else questions
        try:
            return hotpotqa.build_instances(
                selected,
                [config.num_docs],
                config.instance_seed,
                root.parent,
                root.name,
                tokenizer=tokenizer,
                chunk_size=config.chunk_tokens,
                source_fingerprint=hotpotqa.source_fingerprint(source, split=config.data_split),
                pool=pool,
            )
        except ConfigError as exc:
            raise ConfigError(f"hotpotqa instances: {exc}") from None

    @staticmethod
    def _check_instances(corpus: CorpusVersion, num_docs: int) -> None:
        from . import hotpotqa

        if corpus.manifest.get("kind") != hotpotqa.INSTANCE_KIND:
            raise ConfigError(f"corpus: {corpus.path} is not a HotpotQA instance set")
        lengths = hotpotqa.instance_lengths(corpus)
        if lengths != [num_docs]:
            raise ConfigError(
                f"corpus: {corpus.path} holds instances of {', '.join(map(str, lengths))} documents, "
                f"not only num_docs={num_docs}; set num_docs to match, or give the folder above it to build "
                "them"
            )


class SearchQATask(Task):
    """MEM1's search QA: `objectives` composed questions per episode, answered by the constant-memory search
    agent (``memtrain.search.agent``) over a retriever; the reward is EM averaged over the objectives."""

    name = SEARCH_QA
    description = "search QA: answer composed questions by searching a Wikipedia index, constant memory"
    columns = ("episode_id", "index", "dataset", "problem", "questions", "golden_answers", "answer")
    builds_corpus = True
    eval_sampling = (0.0, 0.95)  # MEM1 evaluates greedily
    train_split = "train"

    def __init__(self, retriever: Any = None, settings: Mapping[str, Any] | None = None) -> None:
        self.retriever = retriever
        self.settings = dict(settings or {})

    def schema(self) -> pa.Schema:
        import pyarrow as pa

        from .searchqa import EPISODE_SCHEMA

        return pa.schema([EPISODE_SCHEMA.field(c) for c in self.columns])

    def check(self, config: TrainConfig) -> None:
        from ..search import qa
        from ..search.agent import SearchAgentConfig

        super().check(config)
        if not config.corpus:
            raise ConfigError(
                "corpus: not set; give the folder the search-QA training episodes are built in "
                "(corpus=corpora/search-qa-train), or a version folder of episodes built before"
            )
        qa.parse_datasets(config.search_datasets)
        if config.objectives < 1:
            raise ConfigError(f"objectives must be at least 1, got {config.objectives}")
        config.check_retriever()
        SearchAgentConfig(**self.agent_settings(config))  # its own checks, one line each
        if config.answer_metric != "em":
            raise ConfigError(
                f"answer_metric: the search-qa reward is exact match per objective; {config.answer_metric!r} "
                "does not apply (unset it)"
            )
        if config.dense_weight or config.dense_recall_weight:
            raise ConfigError(
                "dense_weight / dense_recall_weight score a memory agent's answer; set them to 0"
            )

    @staticmethod
    def agent_settings(config: TrainConfig) -> dict[str, Any]:
        return {
            "max_turns": config.max_turns,
            "observation_tokens": config.observation_tokens,
            "topk": config.topk,
            "history": config.history,
            "prompt_tokens": config.problem_tokens,
            "response_tokens": config.response_tokens,
        }

    def training_corpus(self, config: TrainConfig, tokenizer: str) -> CorpusVersion:
        """A version folder (or `corpus_version`) of episodes built before is used as it is; otherwise the
        training questions of `search_datasets` (from `data`: a folder, or the Hub) are composed into
        episodes under `corpus` (reused when identical)."""
        from ..search import qa
        from . import searchqa

        root = Path(config.corpus)
        if (corpus := built_before(config)) is not None:
            if corpus.manifest.get("kind") != searchqa.KIND:
                raise ConfigError(f"corpus: {corpus.path} is not a set of search-QA episodes")
            self._build_index(config)
            return corpus
        datasets = qa.parse_datasets(config.search_datasets)
        questions, sources = {}, []
        for name in datasets:
            source = qa.question_source(config.data, name, datasets, config.data_split)
            try:
                questions[name] = qa.load_questions(source, name, split=config.data_split)
            except MemtrainError as exc:
                raise ConfigError(f"data: {exc}") from None
            sources.append(qa.source_identity(source, name, config.data_split))
        corpus = searchqa.build_episodes(
            questions, config.objectives, config.instance_seed, root, sources, limit=config.max_questions
        )
        self._build_index(config)
        return corpus

    @staticmethod
    def _build_index(config: TrainConfig) -> None:
        """The BM25 index built here, in the one process that prepares the data, so that every training
        process only loads it (`configured`)."""
        if config.retriever == "bm25":
            config.open_retriever()

    def configured(self, config: TrainConfig) -> SearchQATask:
        return SearchQATask(config.open_retriever(), self.agent_settings(config))

    def rollout(
        self, episodes: Sequence[Mapping[str, Any]], backend: Any, config: Any, **kwargs
    ) -> list[Trajectory]:
        """The search agent's trajectories of `episodes`; `config` (the trainer's agent settings) gives the
        group size, sampling, seed and response budget, the task's settings the rest."""
        from ..search.agent import SearchAgentConfig, rollout

        if self.retriever is None:
            raise MemtrainError("the search-qa task has no retriever; use get_task(...).configured(config)")
        agent = SearchAgentConfig(
            **{**self.settings, "response_tokens": config.response_tokens},
            group_size=config.group_size,
            temperature=config.temperature,
            top_p=config.top_p,
            seed=config.seed,
        )
        kwargs.pop("templates", None)
        return rollout(episodes, backend, agent, self.retriever, **kwargs)


TASKS: dict[str, Task] = {task.name: task for task in (MaskedEntityTask(), HotpotQATask(), SearchQATask())}


def get_task(name: str) -> Task:
    """The task called `name`; a ConfigError listing the known ones otherwise."""
    if name not in TASKS:
        raise ConfigError(f"task: unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]


def task_of_corpus(corpus: CorpusVersion) -> Task:
    """The task whose episodes a corpus version holds (its manifest's ``task``; masked-entity without one)."""
    return get_task(corpus.manifest.get("task") or MASKED_ENTITY)
