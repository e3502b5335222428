"""`memtrain inspect-episodes` on a real tiny corpus: summary, rendering, SQL export, versions, bad input."""

from __future__ import annotations

import json
import re
import shutil

import polars as pl
import pytest
from rich.console import Console
from typer.testing import CliRunner

from memtrain.cli import app
from memtrain.corpus import open_corpus
from memtrain.errors import InputError, MemtrainError
from memtrain.inspect import query
from memtrain.inspect.compare import compare_versions
from memtrain.inspect.render import MASK_STYLE, episode_text, get_episode, render_episode, sample_episodes
from memtrain.inspect.summary import summarize
from memtrain.inspect.views import open_views
from memtrain.pipeline.build import build_corpus
from memtrain.pipeline.config import PRESETS, CorpusConfig
from memtrain.pipeline.schema import MASK

runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def con(tiny_corpus):
    return open_views(tiny_corpus)


@pytest.fixture(scope="module")
def episodes(tiny_corpus) -> pl.DataFrame:
    return pl.read_parquet(tiny_corpus.episode_files())


@pytest.fixture
def corpus_copy(tiny_corpus, tmp_path):
    """A private copy of the tiny corpus (OUT/<name>) that a test may damage or add versions to."""
    root = tmp_path / "corpora" / tiny_corpus.path.parent.name
    shutil.copytree(tiny_corpus.path.parent, root, ignore=shutil.ignore_patterns(".work"))
    return root


def test_summary_numbers_equal_a_direct_polars_computation(tiny_corpus, con, episodes):
    summary = summarize(tiny_corpus, con)
    passages = pl.read_parquet(tiny_corpus.passage_files(), columns=["passage_id", "article_id"])

    assert summary.episodes == episodes.height == tiny_corpus.manifest["counts"]["episodes"]
    assert summary.passages == passages.height
    assert summary.articles == passages["article_id"].n_unique()
    per_episode = {
        "tokens": episodes["num_tokens"],
        "chunks": episodes["chunks"].list.len(),
        "passages": episodes["passage_ids"].list.len(),
        "masked occurrences": episodes["num_masks"],
        "answer words": episodes["answer"].str.count_matches(r"\S+"),
        "answer characters": episodes["answer"].str.len_chars(),
    }
    for name, column in per_episode.items():
        spread = summary.per_episode[name]
        assert spread.min == column.min(), name
        assert spread.max == column.max(), name
        assert spread.median == pytest.approx(column.median()), name
        assert spread.mean == pytest.approx(column.mean()), name

    answers = dict(episodes["answer_label"].value_counts().iter_rows())
    spans = dict(
        episodes.select(pl.col("entities").explode().struct.field("label"))
        .to_series()
        .value_counts()
        .iter_rows()
    )
    assert {row.label: row.answers for row in summary.labels} == {
        k: answers.get(k, 0) for k in spans | answers
    }
    assert {row.label: row.spans for row in summary.labels} == {k: spans.get(k, 0) for k in spans | answers}
    assert [row.answers for row in summary.labels] == sorted(
        (row.answers for row in summary.labels), reverse=True
    )

    roles = episodes["passage_roles"].explode().value_counts()
    assert summary.roles == {role: pytest.approx(n / episodes.height) for role, n in roles.iter_rows()}
    words = per_episode["answer words"].value_counts().sort("answer")
    assert summary.answer_words == [tuple(r) for r in words.iter_rows()]
    chunks = per_episode["chunks"].value_counts().sort("chunks")
    assert summary.chunk_counts == [tuple(r) for r in chunks.iter_rows()]
    assert summary.chunk_sizes == sorted(episodes["chunk_size"].unique().to_list())


def test_inspect_prints_the_summary_tables(tiny_corpus, episodes):
    result = cli("inspect-episodes", tiny_corpus.path.parent)
    assert result.exit_code == 0, result.output
    for title in (
        "per episode",
        "entity labels",
        "answer length",
        "chunks per episode",
        "masked occurrences",
    ):
        assert title in result.output
    assert f"{tiny_corpus.name} v{tiny_corpus.version}" in result.output
    assert str(episodes.height) in result.output


def test_a_rendered_episode_shows_its_answer_label_chunks_roles_and_every_mask(con, episodes):
    for ep in episodes.to_dicts():
        text = episode_text(ep)
        masks = [text.plain[s.start : s.end] for s in text.spans if s.style == MASK_STYLE]
        assert masks == [MASK] * ep["num_masks"]

        console = Console(record=True, width=100, force_terminal=True)
        console.print(render_episode(ep))
        shown = console.export_text()
        assert ep["answer"] in shown and ep["answer_label"] in shown
        assert len(re.findall(r"── chunk \d+/\d+ ", shown)) == len(ep["chunks"])
        assert f"chunk {len(ep['chunks'])}/{len(ep['chunks'])}" in shown
        for role in ("pivot", "related", "random"):
            labels = sum(line.startswith(f"{role} ") for line in shown.splitlines())
            assert labels == ep["passage_roles"].count(role)
        assert f"pivot {ep['pivot_id']}" in shown


def test_episodes_are_found_by_id_or_index_and_samples_repeat_with_their_seed(con, episodes):
    first = episodes.row(0, named=True)
    assert get_episode(con, first["episode_id"])["answer"] == first["answer"]
    assert get_episode(con, str(first["index"]))["episode_id"] == first["episode_id"]
    ids = lambda n, seed: [e["episode_id"] for e in sample_episodes(con, n, seed)]  # noqa: E731
    assert ids(3, seed=7) == ids(3, seed=7)
    assert len(set(ids(3, seed=7))) == 3
    assert len({tuple(ids(3, seed=s)) for s in range(4)}) > 1
    assert sorted(ids(100, seed=0)) == sorted(episodes["episode_id"])  # capped at the corpus size


def test_cli_renders_one_episode_or_a_sample(tiny_corpus, episodes):
    ep = episodes.row(1, named=True)
    result = cli("inspect-episodes", tiny_corpus.path, "--episode", ep["episode_id"])
    assert result.exit_code == 0, result.output
    assert ep["answer"] in result.output and f"[{ep['answer_label']}]" in result.output
    assert "chunk 1/" in result.output

    result = cli("inspect-episodes", tiny_corpus.path, "--sample", 2, "--seed", 3)
    assert result.exit_code == 0, result.output
    assert result.output.count("episode   ep-") == 2


SQL = "SELECT episode_id, answer, answer_label, num_masks, passage_roles FROM episodes ORDER BY index"


@pytest.mark.parametrize("fmt", ["parquet", "json", "csv"])
def test_sql_export_round_trips(tiny_corpus, con, tmp_path, fmt):
    expected = query.run_query(con, SQL).pl()
    out = tmp_path / f"result.{fmt}"
    result = cli("inspect-episodes", tiny_corpus.path, "--sql", SQL, "--format", fmt, "--output", out)
    assert result.exit_code == 0, result.output
    if fmt == "parquet":
        assert pl.read_parquet(out).equals(expected)
    elif fmt == "json":
        assert json.loads(out.read_text()) == expected.to_dicts()
        stdout = cli("inspect-episodes", tiny_corpus.path, "--sql", SQL, "--format", "json")
        assert json.loads(stdout.stdout) == expected.to_dicts()
    else:
        scalars = ["episode_id", "answer", "answer_label", "num_masks"]
        back = pl.read_csv(out, schema_overrides={"answer": pl.String})
        assert back.select(scalars).equals(expected.select(scalars).cast({"num_masks": pl.Int64}))
    assert not [p for p in tmp_path.iterdir() if p.name != out.name]  # no temporary file left


def test_sql_prints_a_table_and_the_output_suffix_picks_the_format(tiny_corpus, tmp_path):
    result = cli("inspect-episodes", tiny_corpus.path, "--sql", "SELECT count(*) AS n FROM passages")
    assert result.exit_code == 0, result.output
    assert str(tiny_corpus.manifest["counts"]["passages"]) in result.output
    out = tmp_path / "labels.parquet"
    sql = "SELECT answer_label, count(*) AS n FROM episodes GROUP BY 1"
    assert cli("inspect-episodes", tiny_corpus.path, "--sql", sql, "--output", out).exit_code == 0
    assert pl.read_parquet(out)["n"].sum() == tiny_corpus.manifest["counts"]["episodes"]


def test_compare_shows_count_and_config_changes_between_versions(corpus_copy, tiny_corpus_config):
    config = CorpusConfig(
        **{**PRESETS["tiny"], "name": corpus_copy.name, "seed": tiny_corpus_config.seed + 1}
    )
    second = build_corpus(config, corpus_copy.parent).corpus
    assert second.version == 2

    comparison = compare_versions(corpus_copy, 1, "v2")
    assert [(c.key, c.old, c.new) for c in comparison.config] == [
        ("seed", tiny_corpus_config.seed, tiny_corpus_config.seed + 1)
    ]
    counts = {c.key: (c.old, c.new) for c in comparison.counts}
    assert counts["episodes"] == (16, 16)
    assert counts["tokens"] == (
        open_corpus(corpus_copy, 1).manifest["counts"]["tokens"],
        second.manifest["counts"]["tokens"],
    )

    result = cli("inspect-episodes", second.path, "--compare", "1", "2")
    assert result.exit_code == 0, result.output
    assert "config changes" in result.output and "seed" in result.output


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_bad_input_gives_one_clear_line_and_exit_1(tiny_corpus, tmp_path):
    corpus = tiny_corpus.path.parent
    assert "not a corpus" in one_line_error(cli("inspect-episodes", tmp_path))
    assert "no such corpus folder" in one_line_error(cli("inspect-episodes", tmp_path / "missing"))
    assert "has no version v9" in one_line_error(cli("inspect-episodes", corpus, "--version", 9))
    assert "has no version v9" in one_line_error(cli("inspect-episodes", corpus, "--compare", 1, 9))
    assert "Parser Error" in one_line_error(cli("inspect-episodes", corpus, "--sql", "SELEC 1"))
    message = one_line_error(cli("inspect-episodes", corpus, "--sql", "SELECT * FROM episode"))
    assert "does not exist" in message and "episodes" in message
    assert "no episode 'nope'" in one_line_error(cli("inspect-episodes", corpus, "--episode", "nope"))
    assert "needs --output" in one_line_error(
        cli("inspect-episodes", corpus, "--sql", "SELECT 1", "--format", "parquet")
    )
    assert "cannot be combined" in one_line_error(
        cli("inspect-episodes", corpus, "--sql", "SELECT 1", "--sample", 1)
    )


def test_a_corrupt_shard_is_named(corpus_copy):
    corpus = open_corpus(corpus_copy)
    shard = corpus.episode_files()[-1]
    data = shard.read_bytes()
    shard.unlink()  # replace the file rather than write through it: a shard may be a hard link

    shard.write_bytes(data[: len(data) // 2])  # truncated: no footer
    with pytest.raises(InputError) as err:
        open_views(corpus)
    assert err.value.path == str(shard)
    assert shard.name in one_line_error(cli("inspect-episodes", corpus_copy))

    shard.unlink()
    middle = len(data) // 2
    shard.write_bytes(data[:middle] + bytes(range(256)) * 4 + data[middle + 1024 :])  # damaged pages
    with pytest.raises(InputError) as err:  # same size and footer, but not the checksums the manifest records
        open_views(open_corpus(corpus_copy))
    assert err.value.path == str(shard) and "damaged shard" in str(err.value)

    # Without checksums (a corpus from an older memtrain) the footer is all that is checked up front;
    # DuckDB finds the damage in the data pages, and the shard is still named in one short line.
    unverified = open_corpus(corpus_copy, verify=None)
    con = open_views(unverified)
    with pytest.raises(MemtrainError) as err:
        query.query_frame(query.run_query(con, "SELECT sum(length(text)), sum(len(entities)) FROM episodes"))
    assert str(shard) in str(err.value) and len(str(err.value)) < 400
