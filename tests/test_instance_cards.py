"""Cards, publishing and inspection of a long-document HotpotQA instance set (`memtrain.tasks.hotpotqa`),
built from 40 real HotpotQA dev questions with the real SmolLM2 tokenizer, seen through the CLI as a user
sees it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard
from rich.console import Console

from memtrain.inspect import render, summary
from memtrain.inspect.views import open_views
from memtrain.tasks import hotpotqa as hp

DEV_HEAD = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "hotpotqa"
    / "hotpot_dev_distractor_v1.head40.json"
)
TOKENIZER = "smollm2-135m-instruct"
LENGTHS = (20, 50)  # two lengths, so a per-N config is seen to load only its own N
SEED = 0


def memtrain(*args, timeout: int = 120) -> subprocess.CompletedProcess:
    """The CLI as a user runs it, on a wide terminal (rich wraps long questions at 80 columns)."""
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "memtrain", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def section(card: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", card, re.S | re.M)
    assert match, f"no section {title!r}"
    return match.group(1)


@pytest.fixture(scope="module")
def raw() -> list[dict]:
    return json.loads(DEV_HEAD.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def built(tmp_path_factory, smollm2_gguf):
    """The instance set OUT/hotpotqa/v1, a private copy for this module."""
    out = tmp_path_factory.mktemp("instance-cards")
    questions = hp.load_questions(DEV_HEAD)
    return hp.build_instances(
        questions,
        LENGTHS,
        SEED,
        out,
        "hotpotqa",
        TOKENIZER,
        source_fingerprint=hp.source_fingerprint(DEV_HEAD),
    )


@pytest.fixture(scope="module")
def rows(built) -> list[dict]:
    return list(hp.read_instances(built))


@pytest.fixture(scope="module")
def card(built) -> str:
    result = memtrain("card", built.path.parent)
    assert result.returncode == 0, result.stderr
    assert f"dataset card: {built.path / 'README.md'}" in result.stdout
    return (built.path / "README.md").read_text(encoding="utf-8")


def test_the_kind_in_the_manifest_is_the_one_inspect_and_cards_know(built):
    assert built.manifest["kind"] == hp.INSTANCE_KIND == summary.INSTANCE_KIND
    roles = {hp.ROLE_GOLD, hp.ROLE_CONTEXT, hp.ROLE_PAD, hp.ROLE_DOCUMENT}
    assert roles == set(summary.INSTANCE_ROLES) == set(render.INSTANCE_ROLE_STYLES)


def test_memtrain_card_writes_the_hotpotqa_card_with_hub_metadata(card, built):
    data = DatasetCard(card).data.to_dict()
    assert data["license"] == "cc-by-sa-4.0"
    assert "question-answering" in data["task_categories"] and "hotpotqa" in data["tags"]
    assert data["pretty_name"] == f"MemTrain long-document HotpotQA: hotpotqa v{built.version}"
    configs = {c["config_name"]: c["data_files"][0]["path"] for c in data["configs"]}
    assert list(configs) == ["default", "passages", "n20", "n50"]
    assert configs["default"] == "episodes/*.parquet"
    # nothing of the masked-entity corpus's card
    assert "[MASK]" not in card and "spaCy" not in card and "masked entity" not in card.lower()


def test_the_card_says_what_the_benchmark_is_and_how_it_was_built(card, built):
    intro = card.split("\n## ", 1)[0]
    assert "HotpotQA" in intro and "distractor setting" in intro and "`Document 1:`" in intro
    assert "the **same 40 questions** in the same order" in " ".join(intro.split())
    built_how = section(card, "How the instances were built")
    assert "seed **0**" in built_how and "numpy.random.default_rng([seed, index, N])" in built_how
    assert "391 documents" in built_how  # the pool: every distinct paragraph of the 40 questions
    config_yaml = re.search(r"```yaml\n(.*?)```", built_how, re.S).group(1)
    import yaml

    assert yaml.safe_load(config_yaml) == built.manifest["config"]
    assert built.manifest["questions_sha256"] in built_how and built.manifest["pool_sha256"] in built_how


def test_the_per_n_token_statistics_are_the_builders(card, built):
    stats = section(card, "Statistics")
    table = [line for line in stats.splitlines() if re.match(r"\| \d+ \| \d+ \| \d+ \|", line)]
    per_length = built.manifest["summary"]["per_length"]  # counted by the builder, not by the card
    assert len(table) == len(per_length) == len(LENGTHS)
    for line, expected in zip(table, per_length, strict=True):
        cells = [c.strip().replace(",", "") for c in line.strip("|").split("|")]
        n, instances, questions, low, _median, mean, high, chunks, gold, context, pad = cells
        assert int(n) == expected["num_docs"] and int(instances) == expected["instances"] == int(questions)
        assert (int(low), int(high)) == (expected["min_tokens"], expected["max_tokens"])
        assert float(mean) == pytest.approx(expected["mean_tokens"], abs=0.05)
        assert float(gold) + float(context) + float(pad) == pytest.approx(expected["num_docs"])
    header = next(line for line in stats.splitlines() if line.startswith("| N |"))
    assert header.rstrip().endswith("| gold | context | pad |")


def test_the_card_counts_question_types_and_answers_from_the_data(card, raw):
    stats = section(card, "Statistics")
    for qtype, n in Counter(q["type"] for q in raw).items():
        assert f"| {qtype} | {n} |" in stats
    yes_no = sum(q["answer"].strip().lower() in ("yes", "no") for q in raw)
    assert f"| yes/no | {yes_no} |" in stats and f"| span | {len(raw) - yes_no} |" in stats


def test_the_card_shows_an_example_how_to_score_the_license_and_citations(card, raw, rows):
    example = section(card, "An example instance")
    first = raw[0]  # the first question at the smallest N
    assert first["question"] in example and f"**{first['answer']}**" in example
    row = next(r for r in rows if r["num_docs"] == min(LENGTHS) and r["index"] == 0)
    gold = [i + 1 for i, role in enumerate(row["passage_roles"]) if role == "gold"]
    for number in gold:
        assert f"Document {number}:\n" in example
    for title in dict.fromkeys(t for t, _ in first["supporting_facts"]):
        assert title in example

    scoring = section(card, "Scoring a model")
    command = (
        f"memtrain eval hotpotqa --data {DEV_HEAD.name} --lengths 20,50 --questions 40 --instance-seed 0"
    )
    assert command in scoring and "sub-EM" in scoring and "parse_answer" in scoring

    license_ = section(card, "Source and license")
    assert "HotpotQA" in license_ and "CC BY-SA 4.0" in license_ and "Yang et al., 2018" in license_
    assert hp.source_fingerprint(DEV_HEAD)["files"][0]["sha256"] in license_
    citation = section(card, "Citation")
    assert "@inproceedings{yang2018hotpotqa" in citation
    assert "{HotpotQA}: A Dataset for Diverse, Explainable Multi-hop Question Answering" in citation
    assert "arXiv:2606.03197" in citation and "MemTrain: Self-Supervised Context Memory Training" in citation


def test_the_schema_section_describes_every_column_as_an_instance_set_uses_it(card, built):
    schema = pq.read_schema(built.episode_files()[0])
    lines = [line for line in section(card, "Schema").splitlines() if line.startswith("| `")]
    assert [line.split("`")[1] for line in lines] == schema.names
    described = {line.split("`")[1]: line.rsplit("|", 2)[1].strip() for line in lines}
    assert all(described.values())
    assert "gold" in described["passage_roles"] and "pad" in described["passage_roles"]
    assert "Always 0" in described["num_masks"] and described["problem"] == "The question."


def test_datasets_loads_the_version_folder_whole_per_n_and_its_pool(card, built, tmp_path):
    import datasets

    def load(config: str):
        return datasets.load_dataset(str(built.path), config, split="train", cache_dir=str(tmp_path / "hf"))

    assert load("default").num_rows == 40 * len(LENGTHS)
    n20 = load("n20")
    assert n20.num_rows == 40 and set(n20["num_docs"]) == {20}
    assert load("passages").num_rows == built.manifest["counts"]["passages"] == 391


def test_publish_dry_run_lays_out_a_hub_folder_that_loads_per_n(built, card, tmp_path):
    folder = tmp_path / "hub"
    result = memtrain("publish", built.path.parent, "--repo", "me/x", "--dry-run", "--folder", folder)
    assert result.returncode == 0, result.stderr
    assert "nothing uploaded" in result.stdout and "published" not in result.stdout
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert readme.startswith('---\npretty_name: "MemTrain long-document HotpotQA')
    assert 'load_dataset("me/x", split="train")' in readme and 'load_dataset("me/x", "n20"' in readme
    configs = {
        c["config_name"]: c["data_files"][0]["path"] for c in DatasetCard(readme).data.to_dict()["configs"]
    }
    assert list(configs) == ["default", "n20", "n50"] and configs["default"] == "data/train-*"
    assert all((folder / p).is_file() for n in ("n20", "n50") for p in configs[n])

    import datasets

    n50 = datasets.load_dataset(str(folder), "n50", split="train", cache_dir=str(tmp_path / "hf"))
    expected = [r["episode_id"] for r in hp.read_instances(built, lengths=[50], columns=["episode_id"])]
    assert n50["episode_id"] == expected


def test_inspect_renders_an_instance_with_its_question_answers_and_roles(built, rows):
    row = next(r for r in rows if r["num_docs"] == 50 and r["index"] == 1)
    result = memtrain("inspect-episodes", built.path.parent, "--episode", row["episode_id"])
    assert result.returncode == 0, result.stderr
    header = result.stdout.split("── chunk 1/", 1)[0]
    roles = row["passage_roles"]
    gold = [str(i + 1) for i, role in enumerate(roles) if role == "gold"]
    assert re.search(rf"question\s+{re.escape(row['problem'])}", header)
    assert re.search(
        rf"answer\s+{re.escape(row['answer'])}\s+\[{row['answer_label']}, {row['question_type']}\]", header
    )
    assert "N = 50" in header
    expected = (
        f"50: {roles.count('gold')} gold (Documents {', '.join(gold)}), {roles.count('context')} context, "
        f"{roles.count('pad')} pad"
    )
    assert expected in header
    assert (
        "pivot" not in header
        and "related" not in header
        and "random" not in header
        and "[MASK]" not in header
    )
    labels = [
        line.split(" ", 1)[0]
        for line in result.stdout.splitlines()
        if line.startswith(("gold hp-", "context hp-", "pad hp-"))
    ]
    assert Counter(labels) == Counter(roles)
    assert f"chunk {len(row['chunks'])}/{len(row['chunks'])}" in result.stdout

    by_question = memtrain("inspect-episodes", built.path.parent, "--episode", row["question_id"])
    assert by_question.returncode == 0, by_question.stderr
    assert f"{row['question_id']}@20 (index 1, N = 20)" in by_question.stdout  # the smallest N
    unknown = memtrain("inspect-episodes", built.path.parent, "--episode", "nope")
    assert unknown.returncode == 1 and "question id @ N" in unknown.stderr


def test_a_rendered_instance_highlights_its_span_answer_wherever_it_occurs(built, rows):
    row = next(r for r in rows if r["answer_label"] == "span" and r["answer"] in r["text"])
    text = render.episode_text(row)
    found = [text.plain[s.start : s.end] for s in text.spans if s.style == render.ANSWER_STYLE]
    assert found and all(f.lower() == row["answer"].lower() for f in found)
    console = Console(record=True, width=120, force_terminal=True)
    console.print(render.render_episode(row))
    assert row["problem"] in " ".join(console.export_text().split())


def test_the_sample_of_an_instance_set_repeats_with_its_seed(built):
    con = open_views(built)
    ids = lambda seed: [e["episode_id"] for e in render.sample_episodes(con, 5, seed)]  # noqa: E731
    assert ids(3) == ids(3) and len(set(ids(3))) == 5


def test_inspect_summarizes_per_n_and_per_question_without_masked_corpus_notions(built, raw):
    result = memtrain("inspect-episodes", built.path.parent)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"hotpotqa v{built.version} · HotpotQA instances" in out
    assert re.search(r"questions\s*│\s*40\s", out) and re.search(r"lengths N \(documents\)\s*│\s*20, 50", out)
    assert re.search(r"builder seed\s*│\s*0\s", out) and re.search(r"pool documents\s*│\s*391", out)
    for expected in built.manifest["summary"]["per_length"]:
        cells = [f"{expected[k]:,}" for k in ("num_docs", "instances", "instances", "min_tokens")]
        assert re.search(r"│\s*" + r"\s*│\s*".join(cells) + r"\s*│", out), expected
        assert f"{expected['max_tokens']:,}" in out
    for qtype, n in Counter(q["type"] for q in raw).items():
        assert re.search(rf"{qtype}\s*│\s*{n}\s*│", out)
    for notion in ("masked occurrences", "entity labels", "NER spans", "pivot", "related", "random"):
        assert notion not in out


def test_the_card_checks_the_manifest_fields_of_its_own_kind(built, tmp_path):
    version = tmp_path / "hotpotqa" / f"v{built.version}"
    shutil.copytree(built.path, version, ignore=shutil.ignore_patterns("README.md"))
    manifest = json.loads((version / "manifest.json").read_text())
    del manifest["config"]["seed"], manifest["created_at"]
    (version / "manifest.json").write_text(json.dumps(manifest))
    result = memtrain("card", version)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {version / 'manifest.json'}: missing field(s)")
    assert "created_at" in line and "config.seed" in line and "num_related" not in line
    assert "memtrain.tasks.hotpotqa" in line and not (version / "README.md").exists()

    # the masked-corpus template on an instance set is refused for the fields it reads
    from memtrain.cards import DEFAULT_TEMPLATE

    masked = memtrain("card", built.path, "--template", DEFAULT_TEMPLATE)
    assert masked.returncode == 1 and "config.num_related" in masked.stderr

    manifest["kind"] = "something-else"
    (version / "manifest.json").write_text(json.dumps(manifest))
    unknown = memtrain("card", version)
    assert unknown.returncode == 1 and "'something-else' has no dataset card template" in unknown.stderr
