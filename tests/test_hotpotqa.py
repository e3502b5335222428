"""Long-document HotpotQA instances on 40 real dev questions (392 paragraphs, 391 distinct), the real SmolLM2
tokenizer, MemAgent-format files written here the way MemAgent's own script writes them."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from memtrain.errors import ConfigError, InputError, MemtrainError
from memtrain.tasks import hotpotqa as hp

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hotpotqa"
DEV_HEAD = DATA / "hotpot_dev_distractor_v1.head40.json"
TOKENIZER = "smollm2-135m-instruct"
LENGTHS = (50, 100, 200)
BLOCK = re.compile(r"(?:^|\n\n)Document (\d+):\n")


@pytest.fixture(scope="module")
def raw() -> list[dict]:
    return json.loads(DEV_HEAD.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def questions() -> list[hp.Question]:
    return hp.load_questions(DEV_HEAD)


@pytest.fixture(scope="module")
def built(tmp_path_factory, questions, smollm2_gguf):
    out = tmp_path_factory.mktemp("instances")
    fingerprint = hp.source_fingerprint(DEV_HEAD)
    corpus = hp.build_instances(
        questions, LENGTHS, 0, out, "hotpotqa", TOKENIZER, source_fingerprint=fingerprint
    )
    return corpus


@pytest.fixture(scope="module")
def rows(built) -> list[dict]:
    return list(hp.read_instances(built))


def by_length(rows: list[dict]) -> dict[int, list[dict]]:
    grouped: dict[int, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["num_docs"], []).append(row)
    return grouped


def blocks(row: dict) -> list[str]:
    """The documents of an instance, split at the recorded block starts."""
    text, starts = row["text"], row["passage_starts"]
    ends = [s - 2 for s in starts[1:]] + [len(text)]
    return [text[s:e].split("\n", 1)[1] for s, e in zip(starts, ends, strict=True)]


# --- loaders ------------------------------------------------------------------------------------------------


def test_the_original_json_list_loads_every_question_with_its_paragraphs(questions, raw):
    assert len(questions) == 40
    first = questions[0]
    assert first.question_id == raw[0]["_id"] == "5a8b57f25542995d1e6f1371"
    assert first.answers == ["yes"] and first.type == "comparison" and first.index == 0
    assert first.supporting_titles == ["Scott Derrickson", "Ed Wood"]
    assert len(first.paragraphs) == 10
    title, sentences = raw[0]["context"][0]
    assert first.paragraphs[0] == (title, "".join(sentences))
    assert first.documents[0] == f"{title}\n{''.join(sentences)}"
    assert [q.index for q in questions] == list(range(40))
    assert sum(q.answers[0] in ("yes", "no") for q in questions) == 8


def hub_form(record: dict) -> dict:
    """A record as the Hub's hotpotqa/hotpot_qa stores it: `id`, dict-of-lists context and facts."""
    return {
        "id": record["_id"],
        "question": record["question"],
        "answer": record["answer"],
        "type": record["type"],
        "level": record["level"],
        "supporting_facts": {
            "title": [t for t, _ in record["supporting_facts"]],
            "sent_id": [i for _, i in record["supporting_facts"]],
        },
        "context": {
            "title": [t for t, _ in record["context"]],
            "sentences": [s for _, s in record["context"]],
        },
    }


def test_jsonl_and_both_parquet_forms_load_the_same_questions(tmp_path, raw, questions):
    jsonl = tmp_path / "dev.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in raw), encoding="utf-8")
    hub = tmp_path / "hub.parquet"
    pq.write_table(pa.Table.from_pylist([hub_form(r) for r in raw]), hub)
    structs = tmp_path / "structs.parquet"  # [title, sentences] pairs as Parquet can store them
    struct_rows = [
        {
            **{k: r[k] for k in ("_id", "question", "answer", "type")},
            "context": [{"title": t, "sentences": s} for t, s in r["context"]],
            "supporting_facts": [{"title": t, "sent_id": i} for t, i in r["supporting_facts"]],
        }
        for r in raw
    ]
    pq.write_table(pa.Table.from_pylist(struct_rows), structs)
    for path in (jsonl, hub, structs):
        assert hp.load_questions(path) == questions, path.name


def test_a_datasets_split_converts_like_the_hub_loader(tmp_path, raw, questions):
    """load_hotpotqa_hub converts `datasets.load_dataset(...)`'s rows with questions_from_records: the same
    call on a split that `datasets` reads from a local Parquet file in the Hub's layout (no network)."""
    import datasets

    hub = tmp_path / "validation.parquet"
    pq.write_table(pa.Table.from_pylist([hub_form(r) for r in raw]), hub)
    split = datasets.load_dataset(
        "parquet", data_files=str(hub), split="train", cache_dir=str(tmp_path / "c")
    )
    assert hp.questions_from_records(enumerate(split), "hub") == questions


def test_the_source_fingerprint_names_the_file_and_its_sha256():
    fingerprint = hp.source_fingerprint(DEV_HEAD)
    assert fingerprint["kind"] == "hotpotqa-json"
    (record,) = fingerprint["files"]
    assert record["path"] == str(DEV_HEAD.resolve()) and len(record["sha256"]) == 64
    assert record["size"] == DEV_HEAD.stat().st_size


# --- the pool and the builder -------------------------------------------------------------------------------


def test_the_pool_is_every_distinct_paragraph_sorted(questions):
    pool = hp.DocumentPool.from_questions(questions)
    assert len(pool) == 391  # 392 paragraphs, one shared by two questions
    assert pool.documents == sorted(pool.documents)
    assert len(set(pool.ids)) == 391


def test_every_instance_holds_the_question_and_all_its_own_paragraphs(rows, questions):
    by_id = {q.question_id: q for q in questions}
    assert len(rows) == 40 * len(LENGTHS)
    for row in rows:
        q = by_id[row["question_id"]]
        docs = blocks(row)
        assert len(docs) == len(row["passage_ids"]) == len(row["passage_roles"]) == row["num_docs"]
        assert len(set(docs)) == row["num_docs"]  # N distinct documents
        own = [d for d in docs if d in set(q.documents)]
        assert sorted(own) == sorted(set(q.documents))  # every own paragraph, once
        roles = row["passage_roles"]
        gold = [d for d, r in zip(docs, roles, strict=True) if r == "gold"]
        assert {d.split("\n", 1)[0] for d in gold} == set(q.supporting_titles)
        assert roles.count("gold") + roles.count("context") == len(own)
        assert row["problem"] == q.question and row["answers"] == q.answers == [row["answer"]]
        assert row["episode_id"] == f"{q.question_id}@{row['num_docs']}" and row["pivot_id"] == q.question_id
        assert row["answer_label"] == ("yes/no" if q.answers[0] in ("yes", "no") else "span")
        assert row["question_type"] == q.type and row["num_masks"] == 0 and row["entities"] == []
        assert [hp.document_id(d) for d in docs] == row["passage_ids"]


def test_documents_are_numbered_from_1_to_n_and_the_starts_point_at_them(rows):
    for row in rows:
        numbers = [int(m.group(1)) for m in BLOCK.finditer(row["text"])]
        assert numbers == list(range(1, row["num_docs"] + 1))
        for i, start in enumerate(row["passage_starts"], 1):
            assert row["text"].startswith(f"Document {i}:\n", start)


def test_length_grows_with_n_and_the_manifest_has_token_statistics_per_n(built, rows):
    grouped = by_length(rows)
    for small, large in zip(LENGTHS, LENGTHS[1:], strict=False):
        for a, b in zip(grouped[small], grouped[large], strict=True):
            assert a["question_id"] == b["question_id"]
            assert a["num_tokens"] < b["num_tokens"] and len(a["text"]) < len(b["text"])
    summary = built.manifest["summary"]
    assert summary["lengths"] == list(LENGTHS) and hp.instance_lengths(built) == list(LENGTHS)
    for stats in summary["per_length"]:
        tokens = [r["num_tokens"] for r in grouped[stats["num_docs"]]]
        assert stats["instances"] == 40
        assert (stats["min_tokens"], stats["max_tokens"]) == (min(tokens), max(tokens))
        assert stats["mean_tokens"] == round(sum(tokens) / 40, 1)
    assert 5_000 < summary["per_length"][0]["mean_tokens"] < 12_000  # ~7k tokens at N=50 (paper's 7k)
    for row in rows:  # chunks of the one chunker cover the text, at most chunk_size tokens each
        chunks = row["chunks"]
        assert chunks[0]["start"] == 0 and chunks[-1]["end"] == len(row["text"])
        assert all(a["end"] == b["start"] for a, b in zip(chunks, chunks[1:], strict=False))
        assert sum(c["num_tokens"] for c in chunks) == row["num_tokens"]
        assert all(c["num_tokens"] <= 5000 for c in chunks) and row["chunk_size"] == 5000
        assert row["tokenizer"] == TOKENIZER


def test_every_n_has_the_same_questions_in_the_same_order(rows):
    grouped = by_length(rows)
    orders = [[(r["index"], r["question_id"]) for r in grouped[n]] for n in LENGTHS]
    assert orders[0] == orders[1] == orders[2]
    assert [i for i, _ in orders[0]] == list(range(40))


def test_the_set_is_a_corpus_version_with_checksums_and_the_pool_as_passages(built):
    manifest = built.manifest
    assert built.path.name == "v1" and manifest["kind"] == "hotpotqa-instances"
    assert manifest["counts"] == {
        "questions": 40,
        "episodes": 120,
        "passages": 391,
        "tokens": manifest["summary"]["tokens"],
    }
    assert manifest["source"]["files"][0]["sha256"] == hp.source_fingerprint(DEV_HEAD)["files"][0]["sha256"]
    built.verify(full=True)
    for f in built.episode_files():
        assert pq.read_schema(f).equals(hp.INSTANCE_SCHEMA, check_metadata=False)
        assert pq.ParquetFile(f).metadata.num_rows <= max(1, hp.SHARD_DOCUMENTS // 50)
    passages = pq.read_table(built.passage_files()[0]).to_pylist()
    assert len(passages) == 391
    p = passages[0]
    assert p["passage_id"] == hp.document_id(f"{p['title']}\n{p['text']}") and p["article_id"] == p["title"]


def test_building_the_same_set_again_does_nothing(built, questions):
    again = hp.build_instances(
        questions, list(reversed(LENGTHS)), 0, built.path.parent.parent, "hotpotqa", TOKENIZER,
        source_fingerprint=hp.source_fingerprint(DEV_HEAD),
    )  # fmt: skip
    assert again.path == built.path
    assert [p.name for p in built.path.parent.iterdir() if p.name.startswith("v")] == ["v1"]


def test_the_same_seed_gives_byte_identical_shards_and_one_n_never_depends_on_another(
    built, rows, questions, tmp_path
):
    alone = hp.build_instances(questions, [100], 0, tmp_path, "alone", TOKENIZER)
    wanted = [
        f
        for f in built.episode_files()
        if pq.read_table(f, columns=["num_docs"])["num_docs"][0].as_py() == 100
    ]
    assert [f.read_bytes() for f in alone.episode_files()] == [f.read_bytes() for f in wanted]
    assert alone.passage_files()[0].read_bytes() == built.passage_files()[0].read_bytes()
    pool = hp.DocumentPool.from_questions(questions)
    direct = hp.build_instance(questions[3], pool, 200, 0)
    stored = next(r for r in rows if r["episode_id"] == direct["episode_id"])
    assert direct["text"] == stored["text"] and direct["passage_ids"] == stored["passage_ids"]


def test_an_interrupted_build_redoes_only_what_is_missing_and_gives_the_same_shards(questions, tmp_path):
    first = hp.build_instances(questions, [50], 0, tmp_path, "resume", TOKENIZER)
    checksums = first.manifest["checksums"]
    shutil.rmtree(first.path)  # killed before the version was published
    units = sorted((tmp_path / "resume" / ".cache").glob("instances-*/*.parquet"))
    units[0].write_bytes(units[0].read_bytes()[:100])  # a damaged shard
    leftover = units[0].parent / f".{units[0].name}.x1y2.tmp"  # a half-written one
    leftover.write_bytes(b"PAR1")
    again = hp.build_instances(questions, [50], 0, tmp_path, "resume", TOKENIZER)
    assert again.path.name == "v1" and again.manifest["checksums"] == checksums
    assert not leftover.exists()


def test_another_seed_draws_other_documents_for_the_same_questions(questions, rows):
    pool = hp.DocumentPool.from_questions(questions)
    at_50 = by_length(rows)[50]
    other = [hp.build_instance(q, pool, 50, 1) for q in questions]
    assert [r["question_id"] for r in other] == [r["question_id"] for r in at_50]
    assert all(a["text"] != b["text"] for a, b in zip(other, at_50, strict=True))


def test_n_beyond_the_pool_fails_naming_the_pool_size(questions, tmp_path):
    with pytest.raises(ConfigError, match=r"N=400 documents is more than the pool holds: 391 documents"):
        hp.build_instances(questions, [50, 400], 0, tmp_path, "big", TOKENIZER)
    with pytest.raises(ConfigError, match="fewer than question .* 10 own paragraphs"):
        hp.build_instances(questions, [5], 0, tmp_path, "small", TOKENIZER)
    assert not (tmp_path / "big").exists() and not (tmp_path / "small").exists()


def test_a_selection_is_built_from_the_whole_pool(questions, tmp_path):
    pool = hp.DocumentPool.from_questions(questions)
    corpus = hp.build_instances(questions[:3], [300], 0, tmp_path, "three", TOKENIZER, pool=pool)
    got = list(hp.read_instances(corpus))
    assert [r["index"] for r in got] == [0, 1, 2]
    assert got[2]["text"] == hp.build_instance(questions[2], pool, 300, 0)["text"]
    assert corpus.manifest["summary"]["passages"] == 391


def test_read_instances_streams_the_lengths_asked_for_and_limits_each(built):
    got = list(hp.read_instances(built, lengths=[200, 50], limit=3, columns=["episode_id"]))
    assert [(r["num_docs"], r["episode_id"].split("@")[0]) for r in got] == [
        (n, qid) for n in (50, 200) for qid in [r["episode_id"].split("@")[0] for r in got[:3]]
    ]
    assert set(got[0]) == {"episode_id", "num_docs"}
    with pytest.raises(MemtrainError, match="no instances at N=400"):
        list(hp.read_instances(built, lengths=[400]))


def test_memtrain_inspect_episodes_reads_an_instance_set(built, rows):
    run = [sys.executable, "-m", "memtrain", "inspect-episodes", str(built.path.parent)]
    summary = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert summary.returncode == 0, summary.stderr
    assert re.search(r"episodes\s*│\s*120", summary.stdout) and "gold passages per episode" in summary.stdout
    episode = rows[0]["episode_id"]
    shown = subprocess.run([*run, "--episode", episode], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert episode in shown.stdout and "Document 1:" in shown.stdout
    sql = "SELECT num_docs, count(*) AS n FROM episodes GROUP BY 1 ORDER BY 1"
    query = subprocess.run(
        [*run, "--sql", sql, "--format", "json"], capture_output=True, text=True, timeout=120
    )
    assert query.returncode == 0, query.stderr
    assert [r["n"] for r in json.loads(query.stdout)] == [40, 40, 40]


# --- MemAgent's released files -----------------------------------------------------------------------------


def write_memagent_eval(path: Path, data: list[dict], indices: list[int], num_docs: int) -> list[dict]:
    """An eval_{N}.json exactly as MemAgent's taskutils/memory_data/different_docs_eval.py writes one: the
    sorted pool, the question's paragraphs plus random.sample of the rest, random.Random(4).shuffle, blocks
    "Document {i}:\\n{document}" joined by a blank line, json.dump(indent=4)."""
    docs = sorted({f"{t}\n{''.join(p)}" for d in data for t, p in d["context"]})
    position = {c: i for i, c in enumerate(docs)}
    random.seed(42)
    records = []
    for index in indices:
        item = data[index]
        curr = [position[f"{t}\n{''.join(p)}"] for t, p in item["context"]]
        addition = [i for i in range(len(docs)) if i not in curr]
        chosen = curr + random.sample(addition, max(0, num_docs - len(curr)))
        all_docs = [docs[i] for i in chosen]
        random.Random(4).shuffle(all_docs)
        context = "\n\n".join(f"Document {i + 1}:\n{d}" for i, d in enumerate(all_docs))
        records.append(
            {
                "context": context,
                "input": item["question"],
                "answers": [item["answer"]],
                "num_docs": num_docs,
                "index": index,
            }
        )
    path.write_text(json.dumps(records, ensure_ascii=False, indent=4), encoding="utf-8")
    return records


@pytest.fixture(scope="module")
def memagent_dir(tmp_path_factory, raw) -> Path:
    folder = tmp_path_factory.mktemp("memagent")
    indices = [0, 5, 11, 27, 39]  # 27 has only 2 paragraphs
    for n in (50, 100):
        write_memagent_eval(folder / f"eval_{n}.json", raw, indices, n)
    (folder / "eval_hotpotqa_8192.json").write_text("[]")  # a RULER OOD file: not HotpotQA-at-N
    return folder


def test_memagent_files_become_instances_unchanged(memagent_dir, questions, tmp_path, smollm2_gguf):
    assert hp.is_memagent_source(memagent_dir) and sorted(hp.memagent_files(memagent_dir)) == [50, 100]
    corpus = hp.build_memagent_instances(memagent_dir, tmp_path, "memagent", TOKENIZER, questions=questions)
    got = list(hp.read_instances(corpus))
    records = [r for n in (50, 100) for r in json.loads((memagent_dir / f"eval_{n}.json").read_text())]
    assert [r["text"] for r in got] == [r["context"] for r in records]  # exactly MemAgent's instances
    by_id = {q.question_id: q for q in questions}
    for row, record in zip(got, records, strict=True):
        q = questions[record["index"]]
        assert row["question_id"] == q.question_id and row["index"] == record["index"]
        assert row["num_docs"] == record["num_docs"] == len(row["passage_ids"])
        assert row["answers"] == record["answers"] and row["problem"] == record["input"]
        docs = blocks(row)
        assert [hp.document_id(d) for d in docs] == row["passage_ids"]
        gold = {d.split("\n", 1)[0] for d, r in zip(docs, row["passage_roles"], strict=True) if r == "gold"}
        assert gold == set(by_id[q.question_id].supporting_titles)
        assert row["passage_roles"].count("gold") + row["passage_roles"].count("context") == len(
            set(q.documents)
        )
        assert [int(m.group(1)) for m in BLOCK.finditer(row["text"])] == list(range(1, row["num_docs"] + 1))
    assert corpus.manifest["summary"]["lengths"] == [50, 100]
    assert corpus.manifest["source"]["kind"] == "memagent"
    again = hp.build_memagent_instances(memagent_dir, tmp_path, "memagent", TOKENIZER, questions=questions)
    assert again.path == corpus.path


def test_a_memagent_file_alone_reads_without_questions(memagent_dir):
    got = list(hp.iter_memagent_instances(memagent_dir / "eval_50.json"))
    assert [r["question_id"] for r in got] == [f"memagent-{i}" for i in (0, 5, 11, 27, 39)]
    assert all(set(r["passage_roles"]) == {"document"} for r in got)


# --- bad input: one line naming the file and what is wrong --------------------------------------------------


def broken_files(tmp_path: Path, raw: list[dict]) -> list[tuple[Path, str]]:
    cases = []

    def case(name: str, content: str | bytes, expect: str) -> None:
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        cases.append((path, expect))

    text = json.dumps(raw[:3])
    case("words.json", "hello, world", "not JSON")
    case("truncated.json", text[: len(text) // 2], "record 1: not valid JSON")
    case("empty.json", "", "empty file")
    no_answer = [dict(raw[0]), {k: v for k, v in raw[1].items() if k != "answer"}]
    case(
        "no_answer.json",
        json.dumps(no_answer),
        "record 1 (_id 5a8c7595554299585d9e36b6): missing field 'answer'",
    )
    bad_context = [{**raw[0], "context": "Scott Derrickson"}]
    case(
        "bad_context.jsonl",
        json.dumps(bad_context[0]) + "\n",
        "record 0 (_id 5a8b57f25542995d1e6f1371): field 'context'",
    )
    case("bad_line.jsonl", json.dumps(raw[0]) + "\n{oops\n", "line 2: not valid JSON")
    case("fake.parquet", "_id,question\n", "not a Parquet file")
    case("latin1.json", '[{"question": "caf\xe9"}]'.encode("latin-1"), "not UTF-8")
    case("twice.json", json.dumps([raw[0], raw[0]]), "appears twice")
    return cases


def test_bad_question_files_fail_with_one_line_naming_the_file(tmp_path, raw):
    for path, expect in broken_files(tmp_path, raw):
        with pytest.raises(InputError) as caught:
            hp.load_questions(path)
        message = str(caught.value)
        assert message.startswith(str(path)) and expect in message, message
        assert "\n" not in message
    with pytest.raises(InputError, match="no such file"):
        hp.load_questions(tmp_path / "missing.json")


def test_bad_memagent_files_fail_with_one_line_naming_the_file(tmp_path, raw, memagent_dir):
    good = json.loads((memagent_dir / "eval_50.json").read_text())
    cases = {
        "eval_50.json": (
            [{k: v for k, v in good[0].items() if k != "num_docs"}],
            "missing field(s) 'num_docs'",
        ),
        "eval_100.json": ([good[0]], "num_docs is 50, but the file holds N=100"),
        "eval_12800.json": ([{**good[0], "context": [3, 1, 2], "num_docs": 12800}], "index-only form"),
        "eval_60.json": ([{**good[0], "num_docs": 60}], "no 'Document 51:' block, but num_docs is 60"),
        "eval_40.json": ([{**good[0], "num_docs": 40}], "more than num_docs=40"),
    }
    for name, (records, expect) in cases.items():
        folder = tmp_path / name.removesuffix(".json")
        folder.mkdir()
        path = folder / name
        path.write_text(json.dumps(records))
        with pytest.raises(InputError) as caught:
            list(hp.iter_memagent_instances(folder))
        message = str(caught.value)
        assert message.startswith(str(path)) and expect in message, message
        assert "\n" not in message
    with pytest.raises(InputError, match=r"no MemAgent evaluation file \(eval_\{N\}.json\)"):
        hp.memagent_files(tmp_path)
    with pytest.raises(InputError, match=r"no eval_200.json for N=200 \(found N = 50, 100\)"):
        hp.memagent_files(memagent_dir, [50, 200])
    with pytest.raises(InputError, match="its question is not the loaded set's"):
        list(hp.iter_memagent_instances(memagent_dir, [50], hp.load_questions(DEV_HEAD)[1:]))


# --- lengths and the no-context filter's bookkeeping --------------------------------------------------------


def test_lengths_parse_from_text():
    assert hp.parse_lengths("400, 50,100,50") == [50, 100, 400]
    assert list(hp.DEFAULT_LENGTHS) == [50, 100, 200, 400, 800, 1600, 3200, 6400]
    for bad in ("50,abc", "0", ","):
        with pytest.raises(ConfigError, match="lengths"):
            hp.parse_lengths(bad)


def test_kept_ids_are_saved_loaded_and_applied_in_question_order(tmp_path, questions):
    kept = [questions[7].question_id, questions[2].question_id]
    path = hp.save_kept_ids(tmp_path / "kept.json", kept, model="m", samples=2)
    assert hp.load_kept_ids(path) == kept
    assert json.loads(path.read_text())["model"] == "m"
    assert [q.index for q in hp.apply_kept_ids(questions, hp.load_kept_ids(path))] == [2, 7]
    with pytest.raises(MemtrainError, match="not in the loaded questions"):
        hp.apply_kept_ids(questions[:5], kept)
    (tmp_path / "bad.json").write_text('{"kept": [1, 2]}')
    with pytest.raises(InputError, match="not a kept-ids file"):
        hp.load_kept_ids(tmp_path / "bad.json")
    assert hp.no_context_prompt("Who?") == "Who?\nYour final answer in \\boxed{}.\n"
