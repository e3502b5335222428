"""`MemTrainer`: TRL's `GRPOTrainer` with memory-agent rollouts in place of single-turn generation.

TRL's loop is kept whole: data loading, the buffered generation batch split into `gradient_accumulation_steps`
micro-batches, the clipped surrogate with ε_low/ε_high, the k3 KL to the reference model (or to the disabled
LoRA adapter), vLLM weight sync, gradient accumulation, accelerate/DeepSpeed, logging and checkpoints. These
methods change, each for one reason:

* `_generate_and_score_completions`: a batch item is an episode, not a prompt. It runs G1 memory-agent
  rollouts per episode (plus G2 recall samples per trajectory), turns them into a variable number of rows
  (every turn and every recall sample its own conversation, `grpo.py`), pads the row list with zero-weight
  rows to a multiple of the micro-batch count, and returns the tensors TRL's loss reads.
* `_compute_loss`: rescales TRL's "grpo" loss so that the batch mean runs over real rows only (see there).
* `_get_per_token_logps_and_entropies`: off-GPU only, scores completion positions alone (see there).
* `_save_checkpoint` / `_load_optimizer_and_scheduler`: also save and restore the dynamic-sampling reserve
  position, so `--resume` sees the same data; and save under a temporary name, renamed to
  ``checkpoint-<step>`` only once complete (with `_get_output_dir`; see `checkpoints.py`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints
from trl import GRPOTrainer
from trl.kernels.chunked_logprob import _use_triton
from trl.models import unwrap_model_for_generation
from trl.trainer.utils import pad, selective_log_softmax_and_entropy, split_tensor_dict, use_adapter

from ..config import to_dict
from ..errors import MemtrainError
from ..io import write_json_atomic
from ..tasks.base import get_task
from . import checkpoints, grpo
from .agent import report_calls
from .backends import stop_token_ids
from .backends.transformers import TransformersBackend
from .backends.trl_vllm import TRLvLLMBackend
from .config import TrainConfig, agent_config
from .rewards import boxed_reward
from .types import Trajectory

logger = logging.getLogger(__name__)

STATE_FILE = "memtrain_state.json"
CONFIG_FILE = "memtrain_config.json"


def group_rows(
    group: Sequence[Trajectory], config: TrainConfig, reward_fn: Callable[[Trajectory], float] | None = None
) -> grpo.EpisodeRows:
    """One episode's G1 scored trajectories (see ``agent.score_trajectory``) → rewards, advantages and rows as
    `config` says (Eq. 1-3, DAPO dynamic sampling). R_E is each trajectory's own ``reward`` (scored with the
    same settings, dense terms included); `reward_fn` replaces it."""
    return grpo.episode_rows(
        group,
        rewards=[reward_fn(t) if reward_fn is not None else t.reward for t in group],
        recall_weight=config.recall_weight,
        recall=config.recall,
        coupling=config.coupling,
        scale_rewards=config.scale_rewards,
        dynamic_sampling=config.dynamic_sampling,
    )


class EpisodeReserve:
    """Where dynamic sampling draws extra episodes from: an endless, seeded episode stream and how far it was
    read."""

    def __init__(self, make_stream: Callable[[], Iterator[dict]]):
        self._make_stream = make_stream
        self._stream = make_stream()
        self.consumed = 0

    def take(self, n: int) -> list[dict]:
        taken = [next(self._stream) for _ in range(n)]
        self.consumed += n
        return taken

    def load_state_dict(self, state: dict) -> None:
        self._stream = self._make_stream()
        self.consumed = 0
        self.take(int(state.get("consumed", 0)))


@dataclass
class SampledBatch:
    """What one step's rollouts produced, before padding."""

    episodes: list[grpo.EpisodeRows] = field(default_factory=list)  # kept, at most the batch's episode count
    trajectories: list[Trajectory] = field(default_factory=list)  # every trajectory sampled, all rounds
    rewards: list[float] = field(default_factory=list)  # R_E of every trajectory
    counts: grpo.GroupCounts = field(default_factory=grpo.GroupCounts)
    rounds: int = 0
    rollout_tokens: int = 0
    rollout_seconds: float = 0.0

    @property
    def rows(self) -> list[grpo.Row]:
        return [row for episode in self.episodes for row in episode.rows]


class MemTrainer(GRPOTrainer):
    """Joint GRPO on the memory agent (docs/method.md §5). Each dataset row is an episode of the config's task
    (``memtrain.tasks``), which also rolls it out.

    `reward_fn`, when given, replaces the end-to-end reward R_E of each trajectory (for custom tasks and
    tests); `reserve` supplies the extra episodes of dynamic sampling (none: dropped groups are not replaced).
    """

    _tag_names = ["trl", "grpo", "memtrain"]
    _name = "MemTrain"

    def __init__(
        self,
        model: Any,
        args: Any,
        config: TrainConfig,
        train_dataset: Any,
        processing_class: Any,
        *,
        reserve: EpisodeReserve | None = None,
        reward_fn: Callable[[Trajectory], float] | None = None,
        peft_config: Any = None,
        callbacks: list[TrainerCallback] | None = None,
    ):
        if args.loss_type != "grpo" or args.num_iterations != 1:
            raise MemtrainError("MemTrainer needs loss_type='grpo' and num_iterations=1 (see _compute_loss)")
        if args.steps_per_generation % args.gradient_accumulation_steps:
            raise MemtrainError(
                "MemTrainer needs steps_per_generation to be a multiple of gradient_accumulation_steps (the "
                "number of policy updates per rollout batch times the micro-batches of each)"
            )
        # Policy updates (optimizer steps) per rollout batch: PPO mini-batches.
        self.updates_per_step = args.steps_per_generation // args.gradient_accumulation_steps
        self.memtrain_config = config
        self.task = get_task(config.task).configured(config)
        self.agent_config = agent_config(config)
        self.reserve = reserve
        self.reward_fn = reward_fn
        super().__init__(
            model=model,
            # TRL insists on a reward source. MemTrain's rewards (Eq. 1-2) are computed in `sample_batch`,
            # which replaces TRL's scoring, so this one is never called: it only names the answer metric.
            reward_funcs=[boxed_reward(config.answer_metric)],
            args=args,
            train_dataset=train_dataset,
            processing_class=processing_class,
            peft_config=peft_config,
            callbacks=callbacks,
        )
        self.pad_token_id = self._tokenizer.pad_token_id
        self._vllm_backend = None
        self._saving_checkpoint = False  # while True, transformers saves into the staging folder
        self._skip_update = False  # True while the mini-batch being accumulated has no real row anywhere
        self._last_logps: torch.Tensor | None = None  # the log-probs of the last loss call (ratio metrics)
        # Told what the trainer is doing, for a live console line ("rollouts round 1, …: turn 2: …").
        self.status: Callable[[str], None] | None = None

    # --- rollouts -------------------------------------------------------------------------------------------

    @contextmanager
    def generation_backend(self) -> Iterator[Any]:
        """A memory-agent backend that samples from the current policy weights."""
        if self.use_vllm:
            if self.state.global_step != self._last_loaded_step:
                self.vllm_generation.sync_weights()
                self._last_loaded_step = self.state.global_step
                if self.vllm_generation.mode == "server":
                    # Only the main process pushes weights to the server, and every process then sends its own
                    # requests: none may sample before the update is complete.
                    self.accelerator.wait_for_everyone()
            if self._vllm_backend is None:
                base_url = self.args.vllm_server_base_url or (
                    f"http://{self.args.vllm_server_host}:{self.args.vllm_server_port}"
                )
                stop_ids = stop_token_ids(self.model.generation_config, self._tokenizer)
                self._vllm_backend = TRLvLLMBackend(self.vllm_generation, self._tokenizer, base_url, stop_ids)
            yield self._vllm_backend
            return
        with unwrap_model_for_generation(
            self.model_wrapped,
            self.accelerator,
            gather_deepspeed3_params=self.args.ds3_gather_for_generation,
            gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
        ) as unwrapped:
            yield TransformersBackend(
                unwrapped, self._tokenizer, max_batch_size=self.memtrain_config.generation_batch
            )

    def _rollout_seed(self, round_: int) -> int:
        rank = self.accelerator.process_index
        return (
            self.memtrain_config.seed * 1_000_003 + self.state.global_step * 7_919 + round_ * 131 + rank
        ) % 2**31

    def sample_batch(self, episodes: list[dict]) -> SampledBatch:
        """Rollouts for `episodes`, rows with advantages, and DAPO dynamic sampling (docs/method.md §5).

        Groups whose rewards are all equal are dropped; while fewer episodes than asked still contribute rows,
        more are drawn from the reserve, for at most `max_sampling_rounds` rounds. All processes run the same
        number of rounds (a process that is full samples nothing), since generation may be collective.
        """
        cfg = self.memtrain_config
        target = len(episodes)
        batch = SampledBatch()
        for round_ in range(cfg.max_sampling_rounds):
            batch.rounds = round_ + 1
            trajectories = self._rollout(episodes, round_, batch)
            group_size = self.agent_config.group_size
            for start in range(0, len(trajectories), group_size):
                group = trajectories[start : start + group_size]
                episode = group_rows(group, cfg, self.reward_fn)
                batch.trajectories.extend(group)
                batch.rewards.extend(episode.rewards)
                batch.counts.add(episode.counts)
                if episode.kept:
                    batch.episodes.append(episode)
            missing = max(0, target - len(batch.episodes)) if self.reserve is not None else 0
            if not cfg.dynamic_sampling or not self._any_process(missing > 0):
                break
            episodes = self.reserve.take(missing) if missing else []
        batch.episodes = batch.episodes[:target]
        return batch

    def _rollout(self, episodes: list[dict], round_: int, batch: SampledBatch) -> list[Trajectory]:
        label = f"rollouts round {round_ + 1}, {len(episodes) * self.agent_config.group_size} trajectories: "
        report = report_calls(self.status, label)
        if self.status is not None:
            self.status(label + "first turn …")

        def count(call):
            batch.rollout_tokens += call.prompt_tokens + call.completion_tokens
            if report is not None:
                report(call)

        start = time.perf_counter()
        with self.generation_backend() as backend:
            trajectories = (
                self.task.rollout(
                    episodes, backend, self.agent_config, seed=self._rollout_seed(round_), on_call=count
                )
                if episodes
                else []
            )
        batch.rollout_seconds += time.perf_counter() - start
        return trajectories

    def _any_process(self, flag: bool) -> bool:
        flags = self.accelerator.gather(torch.tensor([int(flag)], device=self.accelerator.device))
        return bool(flags.sum().item())

    # --- rows → the tensors TRL's loss reads ----------------------------------------------------------------

    def _prepare_inputs(self, generation_batch: Any) -> dict[str, Any]:
        # TRL's buffer, with memtrain's split: every steps_per_generation micro-steps a rollout batch is
        # sampled and cut into `updates_per_step` mini-batches (one optimizer step each) of
        # gradient_accumulation_steps micro-batches, each mini-batch normalized over its own real rows.
        if not self.model.training:
            raise MemtrainError("MemTrainer evaluates with memtrain.trainer.train.evaluate, not .evaluate")
        every = self.args.steps_per_generation
        if self._step % every == 0 or self._buffered_inputs is None:
            self._buffered_inputs = self._generate_micro_batches(generation_batch)
        return self._buffered_inputs[self._step % every]

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        raise MemtrainError("MemTrainer samples in _generate_micro_batches (through _prepare_inputs)")

    def _generate_micro_batches(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One rollout batch → its rows → `updates_per_step` mini-batches × gradient_accumulation_steps
        micro-batches of the tensors TRL's loss reads, in the order the training loop consumes them."""
        # TRL repeats every dataset row num_generations (= G1) times; the agent makes the G1 trajectories
        # itself.
        episodes = inputs[:: self.num_generations]
        batch = self.sample_batch(episodes)
        accumulation = self.args.gradient_accumulation_steps
        seed = self._rollout_seed(0) + 17  # the shuffle of rows into mini-batches, reproducible per step
        parts = [
            grpo.pad_rows(part, accumulation, self.pad_token_id)
            for part in grpo.split_rows(batch.rows, self.updates_per_step, seed)
        ]
        if self.status is not None:
            updates = f" in {len(parts)} updates" if len(parts) > 1 else ""
            self.status(f"policy update on {len(batch.rows)} rows{updates}")
        micro_batches: list[dict[str, Any]] = []
        skipped = 0
        for rows in parts:
            tensors = self._rows_to_inputs(rows)
            skipped += int(tensors["update_rows"].item() == 0)
            micro_batches.extend(split_tensor_dict(tensors, accumulation))
        self._log_batch(batch, [row for rows in parts for row in rows], skipped_updates=skipped)
        return micro_batches

    def _rows_to_inputs(self, rows: list[grpo.Row]) -> dict[str, Any]:
        device = self.accelerator.device
        pad_id = self.pad_token_id

        def ragged(values, dtype, value, side):
            return pad(
                [torch.tensor(v, dtype=dtype) for v in values], padding_value=value, padding_side=side
            ).to(device)

        prompt_ids = ragged([r.prompt_ids for r in rows], torch.long, pad_id, "left")
        prompt_mask = ragged([[1] * len(r.prompt_ids) for r in rows], torch.long, 0, "left")
        completion_ids = ragged([r.completion_ids for r in rows], torch.long, pad_id, "right")
        # A padding row's completion is masked out: it adds nothing to the loss, the KL or the metrics.
        completion_mask = ragged(
            [[int(r.weight > 0)] * len(r.completion_ids) for r in rows], torch.long, 0, "right"
        )
        sampling_logps = ragged([r.logprobs for r in rows], torch.float32, 0.0, "right")
        advantages = torch.tensor([r.advantage for r in rows], dtype=torch.float32, device=device)

        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
        logits_to_keep = completion_ids.size(1)
        chunk = self.args.per_device_train_batch_size
        old_logps = ref_logps = None
        with torch.no_grad():
            importance_sampling = self.use_vllm and self.vllm_importance_sampling_correction
            # π_old of the clipped ratio: the policy that sampled, recorded before any update of this step.
            # Needed when a step makes several updates (the later ones are off-policy) and for the vLLM
            # correction (the sampler and the trained model can disagree); otherwise π_old = π_θ.detach().
            if importance_sampling or self.updates_per_step > 1:
                old_logps, _, _ = self._get_per_token_logps_and_entropies(
                    self.model, input_ids, attention_mask, logits_to_keep, batch_size=chunk
                )
            if self.beta != 0.0:
                if self.ref_model is not None:
                    ref_logps, _, _ = self._get_per_token_logps_and_entropies(
                        self.ref_model, input_ids, attention_mask, logits_to_keep, batch_size=chunk
                    )
                else:  # LoRA: the reference is the model with its adapter off (or a frozen copy named "ref")
                    unwrapped = self.accelerator.unwrap_model(self.model)
                    with use_adapter(
                        unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None
                    ):
                        ref_logps, _, _ = self._get_per_token_logps_and_entropies(
                            self.model, input_ids, attention_mask, logits_to_keep, batch_size=chunk
                        )

        real = grpo.real_rows(rows)
        real_global = int(self.accelerator.gather(torch.tensor([real], device=device)).sum().item())
        scale = len(rows) * self.accelerator.num_processes / real_global if real_global else 0.0
        output = {
            "prompt_ids": prompt_ids,
            "prompt_mask": prompt_mask,
            "completion_ids": completion_ids,
            "completion_mask": completion_mask,
            "advantages": advantages,
            "sampling_per_token_logps": sampling_logps,
            "num_items_in_batch": self.accelerator.gather(completion_mask.sum()).sum(),
            "loss_scale": torch.tensor(scale, dtype=torch.float32, device=device),
            # Real rows of this mini-batch on all processes: none means no update (see `_compute_loss`).
            "update_rows": torch.tensor(real_global, dtype=torch.long, device=device),
        }
        if old_logps is not None:
            output["old_per_token_logps"] = old_logps
        if ref_logps is not None:
            output["ref_per_token_logps"] = ref_logps
        if importance_sampling:
            output["importance_sampling_ratio"] = self._importance_sampling_ratio(
                old_logps, sampling_logps, completion_mask
            )
        if old_logps is not None:
            self._log_sampling(
                old_logps, sampling_logps, completion_mask, output.get("importance_sampling_ratio")
            )
        return output

    def _log_sampling(self, trained, sampled, mask, is_ratio) -> None:
        """How far the sampler's log-probs are from the trainer's (≈ 0 with the transformers backend; vLLM's
        numerics differ), and the importance-sampling weights when that correction is on."""
        mask = mask.bool()
        delta = torch.abs(trained - sampled)[mask]
        delta = delta[~torch.isnan(delta)]  # tokens the sampler could not score
        totals = self._over_processes(
            {
                "sum": delta.sum().item(),
                "count": delta.numel(),
                "max": delta.max().item() if delta.numel() else 0.0,
            },
            longest=("max",),
        )
        metrics = self._metrics["train" if self.model.training else "eval"]
        if totals["count"]:
            metrics["sampling/logp_difference/mean"].append(totals["sum"] / totals["count"])
            metrics["sampling/logp_difference/max"].append(totals["max"])
        if is_ratio is not None:
            flat = is_ratio[mask.any(dim=1)].flatten() if is_ratio.size(1) == 1 else is_ratio[mask]
            if flat.numel():
                stats = torch.stack([flat.min(), flat.mean(), flat.max(), (flat == 0).float().mean()])
            else:
                stats = flat.new_full((4,), float("nan"))
            gathered = self.accelerator.gather(stats[None].to(torch.float64))
            metrics["sampling/importance_sampling_ratio/min"].append(
                torch.nan_to_num(gathered[:, 0], nan=float("inf")).min().item()
            )
            metrics["sampling/importance_sampling_ratio/mean"].append(gathered[:, 1].nanmean().item())
            metrics["sampling/importance_sampling_ratio/max"].append(
                torch.nan_to_num(gathered[:, 2], nan=-float("inf")).max().item()
            )
            metrics["sampling/importance_sampling_masked"].append(gathered[:, 3].nanmean().item())

    def _importance_sampling_ratio(self, old_logps, sampling_logps, mask) -> torch.Tensor:
        """π_train/π_sampler per token or per sequence, truncated or masked, as TRL's vLLM correction does."""
        diff = torch.nan_to_num((old_logps - sampling_logps) * mask, nan=0.0)
        mode = self.vllm_importance_sampling_mode
        ratio = torch.exp(diff.sum(dim=-1, keepdim=True) if mode.startswith("sequence") else diff)
        low = self.vllm_importance_sampling_clip_min
        high = self.vllm_importance_sampling_clip_max
        if mode.endswith("truncate"):
            return torch.clamp(ratio, min=low, max=high)
        invalid = (ratio < (low if low is not None else -float("inf"))) | (
            ratio > (high if high is not None else float("inf"))
        )
        return ratio.masked_fill(invalid, 0.0)

    def _get_per_token_logps_and_entropies(
        self, model, input_ids, attention_mask, logits_to_keep, batch_size=None, compute_entropy=False,
        compute_aux_loss=False, **kwargs,
    ):  # fmt: skip
        if _use_triton(input_ids.device) or compute_aux_loss or any(v is not None for v in kwargs.values()):
            result = super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy,
                compute_aux_loss, **kwargs,
            )  # fmt: skip
            self._last_logps = result[0].detach() if compute_entropy else self._last_logps
            return result
        # Without Triton (CPU), TRL's fused LM head scores every position, prompt included. A memory-agent
        # prompt is many times longer than its completion, so here only the completion positions are
        # projected.
        batch_size = batch_size or input_ids.size(0)
        logps, entropies = [], []
        for start in range(0, input_ids.size(0), batch_size):
            ids, mask = input_ids[start : start + batch_size], attention_mask[start : start + batch_size]
            with self.accelerator.autocast():
                logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=logits_to_keep + 1).logits
            logits = logits[:, :-1].float()
            token_logps, token_entropy = selective_log_softmax_and_entropy(
                logits, ids[:, -logits_to_keep:], temperature=self.temperature
            )
            logps.append(token_logps)
            entropies.append(token_entropy)
        logps = torch.cat(logps)
        if compute_entropy:  # the loss's own call (see `_log_ratio`)
            self._last_logps = logps.detach()
        return logps, torch.cat(entropies) if compute_entropy else None, None

    def _compute_loss(self, model, inputs):
        # The paper averages token-means over the *real* rows of the batch that makes one update (E2E turns
        # and recall samples together). TRL's "grpo" loss averages them over all rows of a micro-batch,
        # padding included, and the micro-batches and processes then average again. Every micro-batch of a
        # mini-batch has the same row count, so multiplying by (rows of the mini-batch on this process incl.
        # padding) × processes / (its real rows on all processes) gives exactly the paper's normalization,
        # and zero-weight padding rows drop out of the denominator too.
        self._skip_update = int(inputs["update_rows"]) == 0
        self._last_logps = None
        loss = super()._compute_loss(model, inputs) * inputs["loss_scale"]
        self._log_ratio(inputs)
        return loss

    def _log_ratio(self, inputs: dict[str, Any]) -> None:
        """Statistics of π_θ/π_old over the real completion tokens (1 everywhere on a first update)."""
        old = inputs.get("old_per_token_logps")
        if old is None or self._last_logps is None or not self.model.training:
            return
        ratio = torch.exp(self._last_logps - old)[inputs["completion_mask"].bool()]
        totals = self._over_processes(
            {
                "total": ratio.sum().item(),
                "count": ratio.numel(),
                "min": ratio.min().item() if ratio.numel() else float("inf"),
                "max": ratio.max().item() if ratio.numel() else -float("inf"),
            },
            longest=("max",),
            smallest=("min",),
        )
        if totals["count"]:
            metrics = self._metrics["train"]
            metrics["ratio/mean"].append(totals["total"] / totals["count"])
            metrics["ratio/min"].append(totals["min"])
            metrics["ratio/max"].append(totals["max"])

    # --- updates --------------------------------------------------------------------------------------------

    def create_optimizer(self, *args, **kwargs):
        # A mini-batch whose groups were all dropped has no real row on any process: its gradient is zero,
        # but AdamW would still move the weights (momentum, weight decay). Its optimizer step is skipped.
        optimizer = super().create_optimizer(*args, **kwargs)
        if not getattr(optimizer, "_memtrain_skippable", False):
            step = optimizer.step

            def skippable_step(*step_args, **step_kwargs):
                if self._skip_update:
                    return None
                return step(*step_args, **step_kwargs)

            optimizer.step = skippable_step
            optimizer._memtrain_skippable = True
        return optimizer

    # --- metrics --------------------------------------------------------------------------------------------

    def _over_processes(
        self, local: dict[str, float], longest: tuple[str, ...] = (), smallest: tuple[str, ...] = ()
    ) -> dict[str, float]:
        """`local` figures summed over all processes (those in `longest`: their maximum, in `smallest`: their
        minimum), by name."""
        names = list(local)
        values = torch.tensor(
            [[float(local[n]) for n in names]], dtype=torch.float64, device=self.accelerator.device
        )
        gathered = self.accelerator.gather(values)
        sums, maxima = gathered.sum(dim=0).tolist(), gathered.max(dim=0).values.tolist()
        minima = gathered.min(dim=0).values.tolist()
        return {
            n: maxima[i] if n in longest else minima[i] if n in smallest else sums[i]
            for i, n in enumerate(names)
        }

    def _log_batch(self, batch: SampledBatch, rows: list[grpo.Row], skipped_updates: int = 0) -> None:
        recall_rewards = [r for t in batch.trajectories if t.recall is not None for r in t.recall.rewards]
        gold = [t.gold_logprob for t in batch.trajectories if t.gold_logprob is not None]
        real = [r for r in rows if r.weight > 0]
        totals = self._over_processes(
            {
                "reward": sum(batch.rewards), "trajectories": len(batch.rewards),
                "em": sum(t.em for t in batch.trajectories),
                "recall": sum(recall_rewards), "recall_samples": len(recall_rewards),
                "gold": sum(gold), "gold_scored": len(gold),
                "e2e": batch.counts.e2e, "e2e_dropped": batch.counts.e2e_dropped,
                "recall_groups": batch.counts.recall, "recall_dropped": batch.counts.recall_dropped,
                "real_rows": len(real), "padding_rows": len(rows) - len(real),
                "tokens": sum(r.num_tokens for r in real),
                "completion_tokens": sum(len(r.completion_ids) for r in real),
                "rollout_tokens": batch.rollout_tokens, "rollout_seconds": batch.rollout_seconds,
                "rounds": batch.rounds,
            },
            longest=("rollout_seconds",),
        )  # fmt: skip
        n, seconds, real_rows = max(totals["trajectories"], 1), totals["rollout_seconds"], totals["real_rows"]
        metrics = self._metrics["train" if self.model.training else "eval"]
        metrics["reward"].append(totals["reward"] / n)
        metrics["em"].append(totals["em"] / n)
        if totals["recall_samples"]:
            metrics["recall_em"].append(totals["recall"] / totals["recall_samples"])
        if totals["gold_scored"]:  # scored for the dense reward
            metrics["gold_logprob"].append(totals["gold"] / totals["gold_scored"])
        metrics["groups/e2e_dropped"].append(totals["e2e_dropped"])
        metrics["groups/e2e"].append(totals["e2e"])
        metrics["groups/recall_dropped"].append(totals["recall_dropped"])
        metrics["groups/recall"].append(totals["recall_groups"])
        metrics["sampling_rounds"].append(totals["rounds"] / self.accelerator.num_processes)
        metrics["rows"].append(real_rows)
        metrics["rows/padding"].append(totals["padding_rows"])
        metrics["updates"].append(self.updates_per_step - skipped_updates)
        metrics["updates/skipped"].append(skipped_updates)
        metrics["completions/mean_length"].append(totals["completion_tokens"] / max(real_rows, 1))
        metrics["rollout/seconds"].append(seconds)
        metrics["rollout/tokens_per_second"].append(totals["rollout_tokens"] / seconds if seconds else 0.0)
        if self.model.training:
            self.state.num_input_tokens_seen += int(totals["tokens"])
        metrics["num_tokens"] = [self.state.num_input_tokens_seen]

    # --- checkpoints ----------------------------------------------------------------------------------------

    def _get_output_dir(self, trial):
        run_dir = super()._get_output_dir(trial)
        return (
            os.path.join(run_dir, checkpoints.STAGING)
            if getattr(self, "_saving_checkpoint", False)
            else run_dir
        )

    def _save_checkpoint(self, model, trial):
        # transformers writes checkpoint-<step> where `_get_output_dir` says: during this call, inside the
        # staging folder. The finished folder gets memtrain's files and the completion marker, and only then
        # its final name: a run killed while saving never leaves a checkpoint-<step> that looks complete.
        run_dir = self._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        if self.args.should_save:
            checkpoints.remove_staging(run_dir, name)  # what a save killed at this step left behind
        self.accelerator.wait_for_everyone()
        self._saving_checkpoint = True
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._saving_checkpoint = False
        # Every process draws from its own reserve stream, so each one's position is saved (a collective,
        # which also means every process has finished writing its part of the checkpoint).
        consumed = self.reserve.consumed if self.reserve is not None else 0
        device = self.accelerator.device
        positions = self.accelerator.gather(torch.tensor([consumed], device=device)).tolist()
        if not self.args.should_save:
            return
        staged = os.path.join(run_dir, checkpoints.STAGING, name)
        state = {"reserve": [{"consumed": n} for n in positions] if self.reserve is not None else None}
        write_json_atomic(os.path.join(staged, STATE_FILE), state)
        write_json_atomic(os.path.join(staged, CONFIG_FILE), to_dict(self.memtrain_config))
        checkpoints.write_marker(staged, self.state.global_step)
        final = os.path.join(run_dir, name)
        moved = checkpoints.publish(staged, final)
        if moved is not None:
            logger.warning("%s already existed; renamed it %s (nothing deleted)", final, moved.name)
        checkpoints.remove_staging(run_dir, name)  # the now empty staging folder
        best = getattr(self.state, "best_global_step", None)
        if best:  # transformers looked for the best checkpoint beside the staged one
            best_dir = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{best}")
            if os.path.isdir(best_dir):
                self.state.best_model_checkpoint = best_dir
        # transformers rotated checkpoints inside the staging folder (nothing to do there): rotate here.
        rotate_checkpoints(
            output_dir=run_dir,
            save_total_limit=self.args.save_total_limit,
            best_model_checkpoint=self.state.best_model_checkpoint,
            use_mtime=True,
        )

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        path = os.path.join(checkpoint, STATE_FILE) if checkpoint is not None else None
        if path and os.path.isfile(path) and self.reserve is not None:
            with open(path) as f:
                positions = json.load(f).get("reserve")
            if isinstance(positions, dict):  # written before positions were saved per process
                positions = [positions]
            if positions:
                rank = self.accelerator.process_index
                if len(positions) != self.accelerator.num_processes:
                    raise MemtrainError(
                        f"{path}: saved by {len(positions)} processes, resumed with "
                        f"{self.accelerator.num_processes}; resume with the same number of processes"
                    )
                self.reserve.load_state_dict(positions[rank])
