"""Dataset cards: Hub-readable YAML metadata, the exact build config, schema, statistics, example, citing."""

from __future__ import annotations

import json
import re
import shutil

import pyarrow.parquet as pq
import pytest
import yaml
from huggingface_hub import DatasetCard
from typer.testing import CliRunner

from memtrain.cards import HUB_CONFIGS, render_card
from memtrain.cli import app
from memtrain.corpus import open_corpus
from memtrain.inspect.summary import number, summarize
from memtrain.inspect.views import open_views

runner = CliRunner()


@pytest.fixture(scope="module")
def card(tiny_corpus) -> str:
    return render_card(tiny_corpus, configs=HUB_CONFIGS, load_target="someone/memtrain-enwiki")


def section(card: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", card, re.S | re.M)
    assert match, f"no section {title!r}"
    return match.group(1)


def test_the_card_metadata_is_what_the_hub_and_datasets_read(card, tiny_corpus):
    data = DatasetCard(card).data.to_dict()
    assert data["license"] == "cc-by-sa-4.0"
    assert data["language"] == ["en"]
    assert data["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}
    ]
    assert data["size_categories"] == ["n<1K"]
    assert "text-generation" in data["task_categories"]
    assert data["pretty_name"].endswith(f"{tiny_corpus.name} v{tiny_corpus.version}")
    assert "memtrain" in data["tags"]


def test_the_card_states_the_source_its_license_and_the_exact_build_config(card, tiny_corpus):
    source = section(card, "Source and license")
    assert "Wikipedia" in source and "CC BY-SA 4.0" in source
    for file in tiny_corpus.manifest["source"]["files"]:
        assert file["sha256"] in source
    built = section(card, "How the episodes were built")
    config_yaml = re.search(r"```yaml\n(.*?)```", built, re.S).group(1)
    assert yaml.safe_load(config_yaml) == tiny_corpus.manifest["config"]


def test_the_schema_section_has_one_described_line_per_shard_column(card, tiny_corpus):
    schema = pq.read_schema(tiny_corpus.episode_files()[0])
    rows = [line for line in section(card, "Schema").splitlines() if line.startswith("| `")]
    assert len(rows) == len(schema)
    for row, field in zip(rows, schema, strict=True):
        name, type_, description = (cell.strip() for cell in row.strip("|").split("|", 2))
        assert name == f"`{field.name}`" and type_ == f"`{field.type}`"
        assert description, f"column {field.name} has no description"


def test_the_statistics_are_the_numbers_inspect_prints(card, tiny_corpus):
    summary = summarize(tiny_corpus, open_views(tiny_corpus))
    stats = section(card, "Statistics")
    assert f"| episodes | {number(summary.episodes)} |" in stats
    assert f"| passages | {number(summary.passages)} |" in stats
    for name, s in summary.per_episode.items():
        assert f"| {name} | {' | '.join(number(v) for v in (s.min, s.median, s.mean, s.max))} |" in stats
    for row in summary.labels:
        assert f"| {row.label} | {number(row.answers)} |" in stats


def test_the_card_shows_an_example_limitations_and_how_to_cite(card, tiny_corpus):
    first = next(tiny_corpus.iter_episodes())
    example = section(card, "An example episode")
    assert first["episode_id"] in example and f"**{first['answer']}**" in example
    assert "[MASK]" in example
    assert "NER errors" in section(card, "Limitations") and "Leakage" in section(card, "Limitations")
    citation = section(card, "Citation")
    assert "2606.03197" in citation and "MemTrain: Self-Supervised Context Memory Training" in citation
    assert 'load_dataset("someone/memtrain-enwiki"' in card


def test_memtrain_card_writes_a_readme_that_datasets_loads_from_the_version_folder(tiny_corpus, tmp_path):
    root = tmp_path / tiny_corpus.path.parent.name
    shutil.copytree(tiny_corpus.path.parent, root, ignore=shutil.ignore_patterns(".work", ".cache"))
    result = runner.invoke(app, ["card", str(root)])
    assert result.exit_code == 0, result.output
    readme = root / f"v{tiny_corpus.version}" / "README.md"
    assert readme.is_file()
    assert not list(readme.parent.glob(".*tmp"))
    configs = DatasetCard(readme.read_text()).data.to_dict()["configs"]
    assert [c["config_name"] for c in configs] == ["default", "passages"]

    import datasets

    rows = datasets.load_dataset(str(readme.parent), split="train", cache_dir=str(tmp_path / "hf"))
    assert rows.num_rows == tiny_corpus.manifest["counts"]["episodes"]
    assert (
        open_corpus(root).manifest == tiny_corpus.manifest
    )  # the card is an extra file, nothing else changed


def test_a_broken_template_is_named_with_its_line(tiny_corpus, tmp_path):
    template = tmp_path / "broken.md.j2"
    template.write_text("# {{ pretty_name }}\n{{ no_such_value.field }}\n")
    result = runner.invoke(app, ["card", str(tiny_corpus.path), "--template", str(template)])
    assert result.exit_code == 1
    assert f"{template}:2" in result.stderr and "no_such_value" in result.stderr
    missing = runner.invoke(app, ["card", str(tiny_corpus.path), "--template", str(tmp_path / "none.j2")])
    assert missing.exit_code == 1 and "card template not found" in missing.stderr


def test_a_manifest_missing_what_the_card_needs_is_blamed_not_the_template(tiny_corpus, tmp_path):
    version = tmp_path / "enwiki" / f"v{tiny_corpus.version}"
    shutil.copytree(tiny_corpus.path, version)
    manifest = json.loads((version / "manifest.json").read_text())
    del manifest["config"]["num_related"], manifest["created_at"]
    (version / "manifest.json").write_text(json.dumps(manifest))
    result = runner.invoke(app, ["card", str(version)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {version / 'manifest.json'}: missing field(s)")
    assert "created_at" in line and "config.num_related" in line and "template" not in line
    assert not (version / "README.md").exists()
