import pytest
import torch
from agent_support import shortened, smollm2_backend

from memtrain.errors import ConfigError, MemtrainError
from memtrain.trainer.agent import AgentConfig, prepare_episode, rollout
from memtrain.trainer.prompts import INITIAL_MEMORY
from memtrain.trainer.rewards import e2e_reward

# Small enough for 2 CPU cores: ~3 chunks of 128 tokens, 24-token responses.
CONFIG = AgentConfig.preset(
    "tiny", chunk_tokens=128, memory_tokens=48, response_tokens=24, group_size=2, recall_samples=2, seed=7
)


# Recall probes only need a trajectory to exist: 1-token responses keep this rerun cheap.
SMALL_PROBE = dict(chunk_tokens=128, memory_tokens=48, response_tokens=1, group_size=2, recall_samples=1)


@pytest.fixture(scope="module")
def episodes(tiny_corpus):
    first_two = list(tiny_corpus.iter_episodes())[:2]
    return [shortened(first_two[0], 1400), shortened(first_two[1], 900)]  # 3 chunks and 2 chunks


@pytest.fixture(scope="module")
def run(episodes):
    calls = []
    trajectories = rollout(episodes, smollm2_backend(), CONFIG, on_call=calls.append)
    return trajectories, calls


def test_paper_budgets_and_group_sizes_are_the_defaults():
    config = AgentConfig()
    assert (config.problem_tokens, config.chunk_tokens, config.memory_tokens, config.response_tokens) == (
        1024, 5120, 1024, 1024,
    )  # fmt: skip
    assert config.call_tokens == 8192
    assert (config.group_size, config.recall_samples, config.recall_weight) == (8, 8, 0.5)
    assert (config.temperature, config.top_p) == (1.0, 1.0)
    assert (AgentConfig.preset("paper", "eval").temperature, AgentConfig.preset("paper", "eval").top_p) == (
        0.7,
        0.95,
    )
    assert AgentConfig.preset("tiny").chunk_tokens == 512


def test_bad_agent_settings_are_refused():
    with pytest.raises(ConfigError, match="group_size"):
        AgentConfig(group_size=0)
    with pytest.raises(ConfigError, match="top_p"):
        AgentConfig(top_p=0)
    with pytest.raises(ConfigError, match="unknown agent preset"):
        AgentConfig.preset("huge")


def test_an_episode_without_a_document_names_the_episode():
    with pytest.raises(MemtrainError, match="episode ep-9: needs a string field 'text'"):
        prepare_episode({"episode_id": "ep-9", "answer": "x"}, smollm2_backend().tokenizer, CONFIG)


def test_each_episode_gets_a_group_of_trajectories_reading_every_chunk_then_answering(run, episodes):
    trajectories, _ = run
    assert [(t.episode_id, t.sample) for t in trajectories] == [
        (e["episode_id"], g) for e in episodes for g in range(CONFIG.group_size)
    ]
    tokenizer = smollm2_backend().tokenizer
    for t, episode in zip(trajectories, [e for e in episodes for _ in range(2)], strict=True):
        n = prepare_episode(episode, tokenizer, CONFIG).chunks
        assert t.num_chunks == len(n) >= 2
        assert [turn.kind for turn in t.turns] == ["update"] * len(n) + ["answer"]
        assert [turn.step for turn in t.turns] == list(range(len(n))) + [len(n)]
        assert len(t.memories) == len(n)
        assert t.answer == episode["answer"]


def test_turn_t_sees_only_the_previous_memory_and_its_own_chunk(run, episodes):
    trajectories, _ = run
    tokenizer = smollm2_backend().tokenizer
    prepared = prepare_episode(episodes[0], tokenizer, CONFIG)
    for t in trajectories[: CONFIG.group_size]:
        for turn in t.turns:
            prompt = tokenizer.decode(turn.generation.prompt_ids)
            previous = INITIAL_MEMORY if turn.step == 0 else t.memories[turn.step - 1]
            assert f"<memory> {previous} </memory>" in prompt  # memory_{t-1}, whole
            for earlier in range(turn.step - 1 if turn.kind == "update" else turn.step):
                assert prepared.chunk_text(earlier).strip() not in prompt  # no earlier chunk
            if turn.kind == "update":
                assert prepared.chunk_text(turn.step).strip() in prompt
            else:
                assert "<section>" not in prompt and r"\boxed{}" in prompt


def test_memory_is_the_whole_response_cut_to_its_budget(run):
    trajectories, _ = run
    tokenizer = smollm2_backend().tokenizer
    for t in trajectories:
        for turn, memory in zip(t.turns, t.memories, strict=False):  # the answer turn writes no memory
            ids = turn.generation.completion_ids[: CONFIG.memory_tokens]
            assert memory == tokenizer.decode(ids, skip_special_tokens=True).strip()


def test_every_call_keeps_prompt_ids_sampled_ids_and_their_logprobs(run):
    trajectories, _ = run
    tokenizer = smollm2_backend().tokenizer
    generations = [turn.generation for t in trajectories for turn in t.turns]
    generations += [g for t in trajectories if t.recall for g in t.recall.samples]
    for g in generations:
        assert 0 < len(g.completion_ids) == len(g.logprobs) <= CONFIG.response_tokens
        assert all(lp <= 0.0 for lp in g.logprobs)
        assert g.text == tokenizer.decode(g.completion_ids, skip_special_tokens=True)
        assert g.finish_reason in ("stop", "length")
        assert len(g.prompt_ids) + CONFIG.response_tokens <= CONFIG.call_tokens


def test_all_active_trajectories_share_one_backend_call_per_step(run):
    trajectories, calls = run
    turn_calls = [c for c in calls if c.phase == "turn"]
    assert len(turn_calls) == max(t.num_chunks for t in trajectories) + 1
    assert turn_calls[0].prompts == len(trajectories)  # every trajectory of every episode at once
    # a call mixes the longer episode's update turns with the shorter one's answer turns
    assert [c.prompts for c in turn_calls] == [
        sum(1 for t in trajectories if len(t.turns) > step) for step in range(len(turn_calls))
    ]
    recall_calls = [c for c in calls if c.phase == "recall"]
    probed = [t for t in trajectories if t.recall]
    assert len(recall_calls) == 1 and recall_calls[0].prompts == len(probed) * CONFIG.recall_samples


def test_recall_probes_and_rewards_follow_the_paper(run):
    trajectories, _ = run
    for t in trajectories:
        assert t.recall is not None  # every episode here has ≥ 2 chunks with entities
        probe = t.recall
        assert 0 <= probe.chunk < probe.step < t.num_chunks
        assert len(probe.samples) == len(probe.predictions) == len(probe.rewards) == CONFIG.recall_samples
        assert len({tuple(s.prompt_ids) for s in probe.samples}) == 1  # G2 samples of one prompt
        assert t.memories[probe.step] in smollm2_backend().tokenizer.decode(probe.samples[0].prompt_ids)
        assert all(r in (0.0, 1.0) for r in probe.rewards)
        assert t.reward == pytest.approx(e2e_reward(t.em, probe.rewards, 0.5))
        assert t.em in (0.0, 1.0)


def test_the_same_seed_gives_the_same_rollout(run, episodes):
    trajectories, _ = run
    small = AgentConfig.preset(
        "tiny", chunk_tokens=128, response_tokens=6, group_size=2, recall=False, seed=7
    )
    first = rollout(episodes[1:], smollm2_backend(), small)
    again = rollout(episodes[1:], smollm2_backend(), small)
    ids = [[turn.generation.completion_ids for turn in t.turns] for t in first]
    assert ids == [[turn.generation.completion_ids for turn in t.turns] for t in again]
    assert ids[0] != ids[1]  # the trajectories of a group do sample differently
    assert all(t.recall is None and t.reward == t.em for t in first)  # recall off: R_E is the EM alone
    # probe choices are seeded by (seed, episode, sample), whatever else is in the batch
    alone = rollout(episodes[1:], smollm2_backend(), AgentConfig.preset("tiny", **{**SMALL_PROBE, "seed": 7}))
    assert [t.recall.target for t in alone] == [t.recall.target for t in trajectories[2:]]


def test_memtrain_rollout_prints_the_metrics_and_saves_trajectories(tiny_corpus, tmp_path):
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from memtrain.cli import app

    out = tmp_path / "rollout.parquet"
    args = ["rollout", str(tiny_corpus.path), "--episodes", "1", "--group", "1", "--recall-samples", "1"]
    args += ["-o", "chunk_tokens=1024", "-o", "response_tokens=8", "-o", "memory_tokens=8", "--out", str(out)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for metric in ("E2E em", "recall EM", "mean turns", "tokens / turn", "tokens/s"):
        assert metric in result.output
    rows = pq.read_table(out).to_pylist()
    assert [r["sample"] for r in rows] == [0]
    for row in rows:
        assert row["num_turns"] == row["num_chunks"] + 1 == len(row["memories"]) + 1
        assert row["reward"] == pytest.approx(
            row["em"] + 0.5 * sum(row["recall_rewards"]) / len(row["recall_rewards"])
        )
        assert row["recall_chunk"] < row["recall_step"] and "[TARGET]" in row["recall_section"]


def test_memtrain_rollout_on_a_missing_corpus_fails_with_one_line(tmp_path):
    from typer.testing import CliRunner

    from memtrain.cli import app

    result = CliRunner().invoke(app, ["rollout", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "no such corpus folder" in result.output and "Traceback" not in result.output


def test_memtrain_rollout_refuses_a_bad_out_before_loading_anything(tiny_corpus, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from memtrain.cli import app

    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    (tmp_path / "folder.parquet").mkdir()
    not_ours = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1]}), not_ours)
    missing_model = tmp_path / "missing.gguf"  # loading it would fail: the --out error must come first
    for out, problem in [
        (tmp_path / "folder.parquet", "is a directory"),
        (a_file / "run.parquet", "notes.txt is not a directory"),
        (tmp_path / "run.csv", "must end in .parquet"),
        (not_ours, "exists and is not a trajectories file of memtrain rollout"),
    ]:
        args = ["rollout", str(tiny_corpus.path), "--model", str(missing_model), "--out", str(out)]
        result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
        assert result.exit_code == 1, result.output
        assert f"--out: {out}" in result.output and problem in result.output, result.output
        assert "Traceback" not in result.output
    assert a_file.read_text() == "mine" and pq.read_table(not_ours).column_names == ["x"]


@pytest.mark.skipif(torch.version.cuda is not None, reason="this torch has CUDA")
def test_cuda_on_a_cpu_only_torch_is_one_line_before_anything_loads(tmp_path):
    from typer.testing import CliRunner

    from memtrain.cli import app
    from memtrain.trainer.models import load_model

    expected = f"cuda requested but this torch has no CUDA (torch {torch.__version__}); use --device cpu"
    with pytest.raises(MemtrainError) as failed:
        load_model(tmp_path / "missing.gguf", device="cuda")  # the device is checked before the model
    assert str(failed.value) == expected
    result = CliRunner().invoke(app, ["rollout", str(tmp_path), "--device", "cuda"], env={"COLUMNS": "300"})
    assert result.exit_code == 1 and expected in result.output and "Traceback" not in result.output


def test_a_rollout_whose_out_becomes_unwritable_saves_its_trajectories_elsewhere_and_says_where(
    episodes, tmp_path, monkeypatch
):
    import pyarrow.parquet as pq

    from memtrain.rollout import TrajectoriesNotSaved, run_rollout

    monkeypatch.chdir(tmp_path)  # the first fallback location is the current folder
    results = tmp_path / "results"
    out = results / "run.parquet"  # fine when the rollout starts ...

    def a_file_takes_the_folders_place(call):  # ... until a file is put where its folder would go
        if not results.exists():
            results.write_text("not a folder")

    one_chunk = [shortened(episodes[1], 300)]  # two 1-token calls: one update turn, the answer
    config = AgentConfig.preset("tiny", **{**SMALL_PROBE, "group_size": 1, "recall": False})
    with pytest.raises(TrajectoriesNotSaved) as failed:
        run_rollout(one_chunk, smollm2_backend(), config, out=out, on_call=a_file_takes_the_folders_place)

    saved = failed.value.saved_to
    assert saved.parent == tmp_path and saved.name.startswith("run-unsaved-") and saved.suffix == ".parquet"
    message = str(failed.value)
    assert message.startswith(f"--out: could not write {out} (") and f"saved to {saved} instead" in message
    rows = pq.read_table(saved).to_pylist()
    assert [(r["episode_id"], r["sample"]) for r in rows] == [
        (t.episode_id, t.sample) for t in failed.value.trajectories
    ]
    assert results.read_text() == "not a folder"


def test_a_damaged_gguf_file_is_named_in_one_line(smollm2_gguf, tiny_corpus, tmp_path):
    from typer.testing import CliRunner

    from memtrain.cli import app
    from memtrain.errors import InputError
    from memtrain.trainer.models import materialize

    folder = tmp_path / "model"
    folder.mkdir()
    damaged = folder / smollm2_gguf.name
    with open(smollm2_gguf, "rb") as f:
        damaged.write_bytes(f.read(100_000))  # a download cut short
    with pytest.raises(InputError) as failed:
        materialize(folder)  # the folder holds one .gguf file: the error names that file
    assert failed.value.path == str(damaged) and "not a readable GGUF model: it ends early" in str(
        failed.value
    )
    args = ["rollout", str(tiny_corpus.path), "--model", str(folder), "--episodes", "1", "--device", "cpu"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 1 and f"{damaged}: not a readable GGUF model" in result.output
    assert "Traceback" not in result.output
