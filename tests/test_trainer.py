"""The real MemTrainer on a tiny random-initialised Llama (built here with transformers), tiny corpus."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys

import pytest
import torch
import yaml
from rich.console import Console
from typer.testing import CliRunner

from memtrain.cli import app
from memtrain.config import to_dict
from memtrain.errors import ConfigError
from memtrain.trainer import grpo
from memtrain.trainer.config import TrainConfig
from memtrain.trainer.train import build_trainer, check_config, check_training_setup, train

VOCAB = 512
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tiny_corpus):
    """A 2-layer Llama with a 512-token BPE vocabulary trained on the corpus text: fast on CPU."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = [e["text"] for e in tiny_corpus.iter_episodes(columns=["text"])]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<unk>", "<|im_start|>", "<|im_end|>"]
    bpe.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=VOCAB, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        unk_token="<unk>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def low_token_share(trajectory) -> float:
    """A trivially learnable reward: the share of sampled tokens in the lower half of the vocabulary."""
    ids = [i for turn in trajectory.turns for i in turn.generation.completion_ids]
    return sum(i < VOCAB // 2 for i in ids) / max(1, len(ids))


def tiny_config(tiny_model, tiny_corpus, output_dir, **overrides) -> TrainConfig:
    settings = dict(
        model=str(tiny_model), corpus=str(tiny_corpus.path), output_dir=str(output_dir), max_steps=2,
        episodes_per_step=2, group_size=4, recall_samples=2, held_out_episodes=2, problem_tokens=320,
        chunk_tokens=1536, memory_tokens=8, response_tokens=8, context_tokens=2048,
        gradient_accumulation_steps=2, learning_rate=1e-2, save_steps=1, report_to=["none"], seed=1,
        corpus_tokenizer="ignore",  # the tiny corpus is sized in SmolLM2's tokens (see the test below)
    )  # fmt: skip
    settings.update(overrides)
    return TrainConfig(**settings)


def weights(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_two_steps_change_the_parameters_save_a_reloadable_checkpoint_and_resume(
    tiny_model, tiny_corpus, tmp_path
):
    from transformers import AutoModelForCausalLM

    config = tiny_config(tiny_model, tiny_corpus, tmp_path / "run", group_size=2, episodes_per_step=1)
    terminal = io.StringIO()
    result = train(
        config, reward_fn=low_token_share, console=Console(file=terminal, force_terminal=True, width=200)
    )
    assert result.steps == 2
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal.getvalue())  # the live status line, then the table
    assert "step 1/2 · rollouts round 1, 2 trajectories: turn 0: 2 prompts" in shown
    assert re.search(r"step 2/2 · policy update on \d+ rows", shown)
    assert [
        line.split()[0] for line in re.split(r"[\r\n]", shown) if re.match(r"\s+\d+\s+[\d.]+ ", line)
    ] == [
        "1",
        "2",
    ]
    logged = [h for h in result.log_history if "reward" in h]
    assert len(logged) == 2 and all(
        h["rows"] > 0 and "kl" in h and "clip_ratio/region_mean" in h for h in logged
    )

    before, after = weights(tiny_model), weights(tmp_path / "run")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    checkpoint = tmp_path / "run" / "checkpoint-2"
    state_file = checkpoint / "memtrain_state.json"
    state = json.loads(state_file.read_text())
    assert len(state["reserve"]) == 1
    # A checkpoint of an older memtrain: its reserve position from before positions were per process, and
    # no completion marker (which lists the files and their sizes).
    state_file.write_text(json.dumps({"reserve": state["reserve"][0]}))
    (checkpoint / "memtrain_checkpoint.json").unlink()
    reloaded = AutoModelForCausalLM.from_pretrained(checkpoint)
    assert all(torch.equal(p, after[n]) for n, p in reloaded.state_dict().items() if n in after)

    again = tiny_config(
        tiny_model, tiny_corpus, tmp_path / "run", group_size=2, episodes_per_step=1, max_steps=3
    )
    resumed = train(again, resume=True, reward_fn=low_token_share)
    assert resumed.resumed_from == checkpoint and resumed.set_aside == []
    assert resumed.steps == 3 and (tmp_path / "run" / "checkpoint-3").is_dir()


def test_training_raises_a_trivially_learnable_reward(tiny_model, tiny_corpus, tmp_path):
    config = tiny_config(tiny_model, tiny_corpus, tmp_path / "learn", max_steps=6, beta=0.0, save_steps=100,
                         learning_rate=3e-2, recall=False)  # fmt: skip
    rewards = [h["reward"] for h in train(config, reward_fn=low_token_share).log_history if "reward" in h]
    assert sum(rewards[-2:]) / 2 > sum(rewards[:2]) / 2 + 0.05, rewards


def test_the_loss_is_the_papers_token_mean_then_row_mean_with_clipping_and_k3_kl(
    tiny_model, tiny_corpus, tmp_path
):
    config = tiny_config(tiny_model, tiny_corpus, tmp_path / "loss", beta=0.05, gradient_accumulation_steps=1)
    trainer = build_trainer(config, check_config(config))
    model = trainer.model
    model.train()
    rows = [
        grpo.Row([5, 6, 7], [8, 9, 10, 11], [-1.0] * 4, advantage=0.8, kind="update"),
        grpo.Row([5, 6], [12, 13], [-1.0] * 2, advantage=-0.4, kind="answer"),
        grpo.Row([20, 21, 22, 23], [24], [-1.0], advantage=0.3, kind="recall"),
    ]
    padded = grpo.pad_rows(rows, 5, trainer.pad_token_id)  # 2 zero-weight rows
    inputs = trainer._rows_to_inputs(padded)
    completion_mask = inputs["completion_mask"].float()
    generator = torch.Generator().manual_seed(0)
    # Old and reference log-probs away from the current ones, so that clipping and the KL both matter.
    with torch.no_grad():
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
        mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
        width = inputs["completion_ids"].size(1)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, -width - 1 : -1].float()
        logps = torch.log_softmax(logits, -1).gather(-1, inputs["completion_ids"][..., None])[..., 0]
    inputs["old_per_token_logps"] = logps + 0.5 * torch.randn(logps.shape, generator=generator)
    inputs["ref_per_token_logps"] = logps + 0.3 * torch.randn(logps.shape, generator=generator)
    trainer.current_gradient_accumulation_steps = 1

    loss = trainer._compute_loss(model, inputs)

    ratio = torch.exp(logps - inputs["old_per_token_logps"])
    advantage = inputs["advantages"][:, None]
    surrogate = -torch.min(ratio * advantage, torch.clamp(ratio, 1 - 0.2, 1 + 0.28) * advantage)
    delta = inputs["ref_per_token_logps"] - logps
    kl = torch.exp(delta) - delta - 1
    per_token = (
        surrogate + 0.05 * kl * ratio
    )  # TRL weights the k3 KL by the importance ratio (bias correction)
    real = completion_mask.sum(1) > 0
    per_row = (per_token * completion_mask).sum(1)[real] / completion_mask.sum(1)[real]
    assert real.sum() == 3
    assert loss.item() == pytest.approx(per_row.mean().item(), rel=1e-4, abs=1e-6)


def test_memtrain_train_prints_one_line_per_step_the_held_out_table_and_why_nothing_trains(
    tiny_model, tiny_corpus, tmp_path
):
    # A random model never answers right: every reward is 0, every group is dropped, no row is trained.
    config = tiny_config(
        tiny_model, tiny_corpus, tmp_path / "cli", max_steps=3, eval_episodes=1, eval_samples=2, save_steps=3
    )
    config_file = tmp_path / "train.yaml"
    config_file.write_text(yaml.safe_dump(to_dict(config)))

    result = CliRunner().invoke(app, ["train", "--config", str(config_file)], catch_exceptions=False)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.startswith("held-out at step 0: EM 0.000 · R_E") for line in lines)
    header = next(line for line in lines if line.split()[:2] == ["step", "R_E"])
    assert header.split()[:4] == ["step", "R_E", "EM", "recall"] and header.split()[-1] == "loss"
    steps = lines[lines.index(header) + 1 : lines.index(header) + 5]  # whole lines in a log file too
    assert [line.split()[0] for line in steps[:3]] == ["1", "2", "3"]
    assert all(len(line.split()) == len(header.split()) - 2 for line in steps[:3])  # "drop E2E", "drop rec"
    assert steps[3].startswith("⚠ 3 steps in a row trained no row") and "nothing to learn" in steps[3]
    assert any(line.lstrip("│ ").startswith("step 0") for line in lines)  # held-out E2E reward, EM, recall
    assert "✓ model and checkpoints" in result.stdout and (tmp_path / "cli" / "model.safetensors").is_file()


def test_two_processes_train_and_resume_each_ones_reserve_position(tiny_model, tiny_corpus, tmp_path):
    """Two CPU processes (gloo) started by torch's launcher, as `accelerate launch` starts one per GPU (its
    own --cpu launcher needs MPI): each process reads its own episodes and keeps its own reserve position."""
    config = tiny_config(tiny_model, tiny_corpus, tmp_path / "ddp", save_steps=2, max_sampling_rounds=2)
    config_file = tmp_path / "ddp.yaml"
    config_file.write_text(yaml.safe_dump(to_dict(config)))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
              "--master_addr", "127.0.0.1", "--master_port", str(port),
              "-m", "memtrain", "train", "--config", str(config_file)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    first = subprocess.run(launch, capture_output=True, text=True, timeout=900, env=env)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-4000:]
    state = json.loads((tmp_path / "ddp" / "checkpoint-2" / "memtrain_state.json").read_text())
    assert [type(p["consumed"]) for p in state["reserve"]] == [int, int]  # one position per process

    resumed = subprocess.run(
        [*launch, "-o", "max_steps=3", "-o", "save_steps=3", "--resume"],
        capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-4000:]
    assert (tmp_path / "ddp" / "checkpoint-3").is_dir()


# Each process of a launched job takes its first rollout batch from the trainer's dataloader (as training
# does) and writes the episode ids it got.
FIRST_BATCH = """
import json, os, sys
from memtrain.config import load_config
from memtrain.trainer.config import TrainConfig
from memtrain.trainer.train import build_trainer, check_config

config = load_config(TrainConfig, sys.argv[1], [])
trainer = build_trainer(config, check_config(config))
batch = next(iter(trainer.get_train_dataloader()))
rank = int(os.environ["RANK"])
with open(os.path.join(sys.argv[2], f"rank-{rank}.json"), "w") as handle:
    json.dump([row["episode_id"] for row in batch], handle)
"""


def test_two_processes_sample_distinct_episodes_each_repeated_g1_times(tiny_model, tiny_corpus, tmp_path):
    config = tiny_config(tiny_model, tiny_corpus, tmp_path / "ddp", episodes_per_step=4, update_episodes=2)
    config_file = tmp_path / "ddp.yaml"
    config_file.write_text(yaml.safe_dump(to_dict(config)))
    script = tmp_path / "first_batch.py"
    script.write_text(FIRST_BATCH)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
              "127.0.0.1", "--master_port", str(port), str(script), str(config_file),
              str(tmp_path)]  # fmt: skip
    done = subprocess.run(
        launch, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stderr[-4000:]
    first, second = (json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1))
    # 4 episodes per step over 2 processes: 2 each, every one G1 = 4 times, none on both processes.
    for ids in (first, second):
        assert len(ids) == 2 * 4 and all(ids.count(i) == 4 for i in ids)
    assert not set(first) & set(second)


# Run `memtrain train` in a child process that is killed (SIGKILL) while it writes checkpoint-2's weights:
# the weights file is written, cut to half its length, and the process killed on the spot, which leaves on
# disk exactly what a kill in the middle of that write leaves.
KILLED_WHILE_SAVING = """
import os, signal, sys
import transformers.modeling_utils as modeling_utils

save_file = modeling_utils.safe_save_file

def save_then_die(tensors, filename, *args, **kwargs):
    save_file(tensors, filename, *args, **kwargs)
    if "checkpoint-2" in str(filename):
        os.truncate(filename, os.path.getsize(filename) // 2)
        os.kill(os.getpid(), signal.SIGKILL)

modeling_utils.safe_save_file = save_then_die
from memtrain.cli import app
app(["train", "--config", sys.argv[1]])
"""


def test_resume_after_a_kill_during_a_checkpoint_save_continues_from_the_last_complete_one(
    tiny_model, tiny_corpus, tmp_path
):
    from memtrain.trainer import checkpoints

    run = tmp_path / "killed"
    config = tiny_config(tiny_model, tiny_corpus, run, group_size=2, episodes_per_step=1)
    config_file = tmp_path / "killed.yaml"
    config_file.write_text(yaml.safe_dump(to_dict(config)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WHILE_SAVING, str(config_file)],
        capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stdout[-2000:] + killed.stderr[-4000:]
    # The half-written save never got the name checkpoint-2; checkpoint-1 is whole.
    assert not (run / "checkpoint-2").exists()
    partial = run / checkpoints.STAGING / "checkpoint-2"
    assert "model.safetensors: truncated" in checkpoints.checkpoint_problem(partial)
    assert checkpoints.checkpoint_problem(run / "checkpoint-1") is None
    # What memtrain before this fix left after the same kill: the partial folder under its final name
    # (resuming from it failed with "SafetensorError: incomplete metadata").
    shutil.copytree(partial, run / "checkpoint-2")
    # A complete checkpoint of an older memtrain has no completion marker: it is still resumed from.
    (run / "checkpoint-1" / checkpoints.MARKER).unlink()

    result = CliRunner().invoke(
        app, ["train", "--config", str(config_file), "--resume"], env={"COLUMNS": "300"}
    )

    assert result.exit_code == 0, result.output
    out = result.output
    assert "checkpoint-2 is incomplete (model.safetensors: truncated" in out
    assert "renamed incomplete-checkpoint-2" in out and "removed the unfinished save of checkpoint-2" in out
    assert "resuming from checkpoint-1 (step 1)" in out and "Traceback" not in out
    assert checkpoints.checkpoint_problem(run / "checkpoint-2") is None  # saved again, whole, with its marker
    assert json.loads((run / "checkpoint-2" / "trainer_state.json").read_text())["global_step"] == 2
    assert (run / "checkpoint-2" / checkpoints.MARKER).is_file()
    assert (run / "incomplete-checkpoint-2" / "model.safetensors").is_file()  # kept, not deleted
    assert not (run / checkpoints.STAGING).exists()
    assert (run / "model.safetensors").is_file()


class MiniBatchProbe:
    """Copies, at the end of every optimizer step, the ratio and clip figures logged since the last log."""

    def __init__(self):
        from transformers import TrainerCallback

        probe = self
        self.snapshots: list[dict[str, list[float]]] = []

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                metrics = probe.trainer._metrics["train"]
                keys = ("ratio/mean", "ratio/min", "ratio/max", "clip_ratio/region_mean")
                probe.snapshots.append({k: list(metrics.get(k, [])) for k in keys})

        self.callback = Callback()


def test_a_rollout_batch_makes_several_updates_whose_later_ones_are_off_policy_and_clipped(
    tiny_model, tiny_corpus, tmp_path
):
    # 2 episodes per step, one per update: two optimizer steps on the rows of one rollout batch.
    config = tiny_config(
        tiny_model, tiny_corpus, tmp_path / "mini", max_steps=1, update_episodes=1, beta=0.0,
        gradient_accumulation_steps=1, learning_rate=0.2, weight_decay=0.0, recall=False, save_steps=100,
    )  # fmt: skip
    probe = MiniBatchProbe()
    trainer = build_trainer(
        config, check_config(config), reward_fn=low_token_share, callbacks=[probe.callback]
    )
    probe.trainer = trainer
    trainer.train()
    assert trainer.state.global_step == 2  # one memtrain step, two policy updates
    first, second = probe.snapshots
    # The first update is on-policy: π_θ = π_old on every token.
    assert first["ratio/min"][0] == pytest.approx(1.0, abs=1e-4)
    assert first["ratio/max"][0] == pytest.approx(1.0, abs=1e-4)
    assert first["clip_ratio/region_mean"][0] == 0.0
    # The second sees the weights the first update moved: ratios away from 1, and clipped where they left
    # [1 - 0.2, 1 + 0.28] in the direction of their advantage.
    assert second["ratio/max"][1] - second["ratio/min"][1] > 1e-2
    assert second["clip_ratio/region_mean"][1] > 0.0
    logged = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logged) == 1 and logged[0]["updates"] == 2 and logged[0]["updates/skipped"] == 0
    # π_old was recorded at sampling time: the sampler's log-probs are the trained model's (on-policy).
    assert logged[0]["sampling/logp_difference/max"] < 1e-3


def test_a_step_whose_groups_are_all_dropped_does_not_move_the_weights_and_says_so(
    tiny_model, tiny_corpus, tmp_path
):
    config = tiny_config(
        tiny_model, tiny_corpus, tmp_path / "flat", max_steps=1, learning_rate=0.1, weight_decay=0.1,
        recall=False, save_steps=100, max_sampling_rounds=1,
    )  # fmt: skip
    terminal = io.StringIO()
    console = Console(file=terminal, width=300)
    result = train(config, reward_fn=lambda trajectory: 0.0, console=console)
    logged = [h for h in result.log_history if "reward" in h]
    assert logged[0]["rows"] == 0 and logged[0]["updates/skipped"] == 1 and logged[0]["updates"] == 0
    before, after = weights(tiny_model), weights(tmp_path / "flat")
    assert all(torch.equal(before[k], after[k]) for k in before)  # AdamW's weight decay did not act either


def test_dense_reward_trains_where_exact_match_never_scores_and_every_evaluation_is_diagnosed(
    tiny_model, tiny_corpus, tmp_path
):
    # A random 2-layer model never names the masked entity: with EM alone every group is dropped. The dense
    # memory reward (log-likelihood of the gold answer given the final memory) differs between samples.
    config = tiny_config(
        tiny_model, tiny_corpus, tmp_path / "dense", max_steps=2, dense_weight=1.0, dense_recall_weight=0.5,
        eval_episodes=2, eval_steps=1, eval_samples=2, save_steps=100,
    )  # fmt: skip
    terminal = io.StringIO()
    result = train(config, console=Console(file=terminal, width=300))
    logged = [h for h in result.log_history if "reward" in h]
    assert all(h["rows"] > 0 and h["gold_logprob"] < 0 for h in logged)
    assert all(h["em"] == 0.0 for h in logged)  # the rows came from the dense signal alone
    records = [
        json.loads(line) for line in (tmp_path / "dense" / "diagnostics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in records] == [0, 1, 2]  # before training, every eval_steps, at the end
    for record in records:
        assert record["gold_logprob"] < 0 and 0.0 <= record["boxed"] <= 1.0 and record["memory_tokens"] > 0
        assert any(key.startswith("recall_em/distance_") for key in record)
    # The loggers (TensorBoard) got every evaluation; the trainer's log_history starts when training does.
    assert [h["step"] for h in result.log_history if "eval_gold_logprob" in h] == [1, 2]
    assert result.diagnostics_plot == tmp_path / "dense" / "diagnostics.png"
    assert result.diagnostics_plot.read_bytes()[:4] == b"\x89PNG"
    shown = terminal.getvalue()
    assert "held-out at step 1: EM 0.000 · R_E" in shown and "gold log p" in shown


def test_a_corpus_sized_with_another_tokenizer_is_refused_or_recounted_in_the_policys_tokens(
    tiny_model, tiny_corpus, tmp_path
):
    config = tiny_config(tiny_model, tiny_corpus, tmp_path / "tok", corpus_tokenizer="check")
    with pytest.raises(ConfigError, match="sized with the smollm2-135m-instruct tokenizer.*--tokenizer "):
        check_config(config)
    recount = tiny_config(tiny_model, tiny_corpus, tmp_path / "tok", corpus_tokenizer="recount", max_chunks=2)
    _, found = check_training_setup(recount)
    assert not found.same and found.sampled > 0
    low, median, high = found.tokens
    assert 0 < low <= median <= high
    assert 1 <= found.chunks[0] <= found.chunks[2] <= 2  # the max_chunks cap


def test_dynamic_sampling_replaces_a_dropped_group_with_an_episode_from_the_reserve(
    tiny_model, tiny_corpus, tmp_path
):
    config = tiny_config(tiny_model, tiny_corpus, tmp_path / "refill", recall=False, max_sampling_rounds=3)
    flat: set[str] = set()

    def reward(trajectory):  # one episode's group scores all alike (dropped); the others' differ
        return 0.0 if trajectory.episode_id in flat else low_token_share(trajectory)

    trainer = build_trainer(config, check_config(config), reward_fn=reward)
    refill = next(trainer.reserve._make_stream())["episode_id"]  # what the reserve hands out first
    stream = (e for e in trainer.train_dataset if e["episode_id"] != refill)
    episodes = [next(stream), next(stream)]
    flat.add(episodes[0]["episode_id"])

    batch = trainer.sample_batch(episodes)

    assert batch.rounds == 2 and trainer.reserve.consumed == 1  # one more episode, in a second round
    assert [e.episode_id for e in batch.episodes] == [episodes[1]["episode_id"], refill]
    assert (batch.counts.e2e, batch.counts.e2e_dropped) == (3, 1)
