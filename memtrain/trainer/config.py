"""`memtrain train`'s configuration: the paper's joint-GRPO settings as defaults (docs/method.md §5, §8).

The memory agent's settings (token budgets, G1 and G2, the rewards, sampling) are
:class:`~memtrain.trainer.agent.AgentSettings`' fields, defined there once and inherited; :func:`agent_config`
turns a TrainConfig into the agent's settings for training or for held-out evaluation.

Load with ``memtrain.config.load_config(TrainConfig, path, overrides)`` and call :meth:`TrainConfig.validate`
before loading any model. Where each check lives:

- construction (``__post_init__``): each field's own bounds, a value that can never work (unknown keys and
  ill-typed values are ``load_config``'s);
- :meth:`TrainConfig.validate`: what training needs of the agent settings (G1 ≥ 2, G2 ≥ 2 with recall,
  temperature > 0), settings that must agree (token budgets and ``context_tokens``, batch and mini-batches,
  evaluation and held-out episodes), ``trl_args``, the task's own checks, that the model exists;
- ``train.check_config``: what needs the machine (processes, output_dir, packages, the corpus, the weights);
- ``train.grpo_args`` and ``MemTrainer.__init__``: what only TRL's ``GRPOConfig`` can tell.

Fields TRL owns keep TRL's names (`learning_rate`, `beta`, `epsilon`, …); any other `trl.GRPOConfig` field can
be set through `trl_args`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..search.settings import RetrieverSettings
from ..tasks.base import MASKED_ENTITY, SEARCH_QA, TASKS, Task, get_task
from .agent import PAPER_CALL_TOKENS, AgentConfig, AgentSettings
from .models import WEIGHT_DTYPES

SEARCH_TURN_OVERHEAD = (
    32  # tokens of a kept search turn beyond its response and observation (tags, turns left)
)

BACKENDS = ("transformers", "vllm")
VLLM_MODES = ("colocate", "server")
DTYPES = ("auto", *WEIGHT_DTYPES)
# GRPOConfig fields derived from those `trl_kwargs` sets (TRL's batch arithmetic, a deprecated alias).
_DERIVED_TRL_FIELDS = {"generation_batch_size", "gradient_checkpointing"}
# GRPOConfig fields that MemTrainer cannot honour, with the one value it accepts and why: memory-agent
# rollouts go through memtrain's backends, not TRL's generate, so TRL's generation options never reach them.
_SAMPLING_ONLY = "set sampling with temperature and top_p"
_UNSUPPORTED_TRL_FIELDS: dict[str, tuple[Any, str]] = {
    "vllm_enable_sleep_mode": (
        False,
        "rollouts call the vLLM engine directly; TRL wakes a sleeping KV cache only in its own generate",
    ),
    "vllm_tensor_parallel_size": (
        1,
        "each process sends its own prompts; a tensor-parallel group needs the same requests from every rank",
    ),
    "mask_truncated_completions": (False, "the completion mask comes from the rows' weights"),
    "top_k": (0, _SAMPLING_ONLY),
    "min_p": (None, _SAMPLING_ONLY),
    "repetition_penalty": (1.0, _SAMPLING_ONLY),
    "generation_kwargs": (None, _SAMPLING_ONLY),
}


@dataclass
class TrainConfig(RetrieverSettings, AgentSettings):
    """Joint GRPO on the memory agent: G1 E2E trajectories per episode, G2 recall samples per trajectory.

    The agent's settings (budgets, `group_size` G1, `recall_samples` G2, `recall`, the rewards, `temperature`
    and `top_p` of training rollouts) are inherited from :class:`AgentSettings`, the search-QA retriever's
    (`retriever`, `collection`, its timeout and retries) from
    :class:`~memtrain.search.settings.RetrieverSettings`; the fields below are training's own."""

    # --- what to train, on what ---
    task: str = field(
        default="masked-entity",
        metadata={
            "help": "masked-entity (MemTrain's pretraining, on a build-corpus corpus) or hotpotqa "
            "(long-document QA post-training on HotpotQA instances, MemAgent's recipe)."
        },
    )
    model: str = field(
        default="smollm2-135m-instruct",
        metadata={
            "help": "Policy model: an asset name, a local folder, a .gguf file, a Hub id, or the output_dir "
            "(or a checkpoint-<step> folder) of an earlier `memtrain train`."
        },
    )
    corpus: str = field(
        default="",
        metadata={
            "help": "masked-entity: the corpus folder `memtrain build-corpus` wrote (OUT/<name>, or a "
            "version folder). hotpotqa: the folder the training instances are built in (OUT/<name>), "
            "or a version folder of instances built before (used as it is)."
        },
    )
    corpus_version: int | None = field(
        default=None, metadata={"help": "Corpus version v<N> to train on; the latest when unset."}
    )

    # --- hotpotqa and search-qa: the training data ---
    data: str | None = field(
        default=None,
        metadata={
            "help": "hotpotqa: the questions, a HotpotQA file (.json/.jsonl/.parquet) or a Hub id (unset: "
            "hotpotqa/hotpot_qa); search-qa: a folder of <dataset>/<data_split>.jsonl or <dataset>.jsonl, "
            "or a Hub id (unset: RUC-NLPIR/FlashRAG_datasets)."
        },
    )
    data_split: str = field(
        default="train", metadata={"help": "The training split (a Hub id's; search-qa: also a folder's)."}
    )
    num_docs: int = field(
        default=200,
        metadata={"help": "hotpotqa: documents per training instance (MemAgent: 200, ~28k tokens)."},
    )
    max_questions: int | None = field(
        default=None,
        metadata={
            "help": "hotpotqa: build instances of the first N questions only; search-qa: the first N "
            "episodes per dataset (unset: all)."
        },
    )
    instance_seed: int = field(
        default=0,
        metadata={"help": "Seed of the instance builder (hotpotqa) or of the datasets' mix (search-qa)."},
    )

    # --- search-qa: the episodes and the search agent (MEM1's recipe) ---
    search_datasets: list[str] = field(
        default_factory=lambda: ["nq", "hotpotqa"],
        metadata={"help": "search-qa: training benchmarks (MEM1: NQ + HotpotQA); questions from `data`."},
    )
    objectives: int = field(default=2, metadata={"help": "search-qa: questions per episode (MEM1: 2)."})
    max_turns: int = field(default=6, metadata={"help": "search-qa: turns per trajectory (MEM1: 6)."})
    observation_tokens: int = field(
        default=1000, metadata={"help": "search-qa: search results longer than this are cut (MEM1: 1,000)."}
    )
    topk: int = field(default=3, metadata={"help": "search-qa: passages per search (MEM1: 3)."})
    history: str = field(
        default="constant", metadata={"help": "search-qa: constant (MEM1) or full (every turn kept)."}
    )
    held_out_episodes: int = field(
        default=0,
        metadata={
            "help": "The first N episodes (by index) are never trained on; they are the evaluation set."
        },
    )
    output_dir: str = field(
        default="runs/memtrain", metadata={"help": "Checkpoints, logs and the final model go here."}
    )
    seed: int = field(default=42, metadata={"help": "Seed of data order, rollouts and recall probes."})

    # --- batch and groups (Eq. 1-3) ---
    max_steps: int = field(
        default=300,
        metadata={
            "help": "Training steps, each one rollout batch (the paper: 300); a step makes "
            "episodes_per_step / update_episodes optimizer updates."
        },
    )
    episodes_per_step: int = field(
        default=32,
        metadata={"help": "Episodes per step (one rollout batch), over all processes (paper: 32)."},
    )
    update_episodes: int | None = field(
        default=None,
        metadata={
            "help": "Episodes per policy update (PPO mini-batch): each rollout batch of episodes_per_step is "
            "shuffled (as rows) into episodes_per_step / update_episodes optimizer steps, the later ones "
            "off-policy, so the clipped ratio acts. Unset: one update per rollout batch (the paper's "
            "pretraining says no more). MemAgent's post-training: 8 of 32."
        },
    )
    scale_rewards: bool = field(
        default=False,
        metadata={"help": "Divide advantages by the group's reward std (off: Dr. GRPO, the paper's Eq. 3)."},
    )
    dynamic_sampling: bool = field(
        default=True,
        metadata={
            "help": "DAPO dynamic sampling: drop groups whose rewards are all equal and sample more episodes."
        },
    )
    max_sampling_rounds: int = field(
        default=3,
        metadata={
            "help": "Dynamic sampling stops after this many rollout rounds per step, batch full or not."
        },
    )

    # --- objective and optimizer (Eq. 4) ---
    learning_rate: float = field(default=1e-6, metadata={"help": "AdamW learning rate (paper: 1e-6)."})
    beta: float = field(
        default=1e-3, metadata={"help": "KL coefficient to the reference model (k3 estimator)."}
    )
    epsilon: float = field(default=0.2, metadata={"help": "ε_low of the clipped surrogate."})
    epsilon_high: float = field(
        default=0.28, metadata={"help": "ε_high of the clipped surrogate (DAPO clip-higher)."}
    )
    lr_scheduler_type: str = field(
        default="constant", metadata={"help": "LR schedule (paper silent; veRL's default is constant)."}
    )
    warmup_steps: float = field(
        default=0, metadata={"help": "Linear LR warm-up: a step count, or a fraction of max_steps below 1."}
    )
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (veRL's default)."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (veRL's default)."})
    gradient_accumulation_steps: int = field(
        default=1,
        metadata={
            "help": "Micro-batches per optimizer step and process: each process's rows are split into this "
            "many forward/backward passes. Raise it when rows do not fit in memory."
        },
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Trade compute for activation memory."}
    )
    dtype: str = field(
        default="auto",
        metadata={
            "help": "Training dtype: auto (bfloat16 on a GPU that supports it, else float32), or a dtype."
        },
    )

    # --- the call's context (the agent's budgets are AgentSettings': 8192 = 1024 + 5120 + 1024 + 1024) ---
    corpus_tokenizer: str = field(
        default="check",
        metadata={
            "help": "When the corpus was sized with another tokenizer than the policy's: check (refuse, "
            "naming the rebuild command), recount (train anyway; a sample of episodes is counted in the "
            "policy's tokens and reported) or ignore."
        },
    )
    context_tokens: int = field(
        default=PAPER_CALL_TOKENS,
        metadata={
            "help": "Per-call context; the agent's four budgets (problem_tokens, chunk_tokens, "
            "memory_tokens, response_tokens) must fit in it."
        },
    )

    # --- evaluation on held-out episodes ---
    eval_episodes: int = field(
        default=0, metadata={"help": "Held-out episodes evaluated before training and at the end (0: none)."}
    )
    eval_steps: int = field(
        default=0,
        metadata={
            "help": "Also evaluate the held-out episodes every N steps (0: before training and at the end "
            "only). Every evaluation goes to diagnostics.jsonl, TensorBoard and, at the end, diagnostics.png."
        },
    )
    eval_samples: int = field(
        default=4, metadata={"help": "Trajectories (and recall samples) per held-out episode."}
    )
    eval_temperature: float | None = field(
        default=None,
        metadata={
            "help": "Sampling temperature in evaluation (unset: the task's; memory agent 0.7, search 0)."
        },
    )
    eval_top_p: float | None = field(
        default=None, metadata={"help": "Nucleus sampling in evaluation (unset: the task's, 0.95)."}
    )

    # --- generation backend ---
    backend: str = field(
        default="transformers", metadata={"help": "Rollout backend: transformers (CPU/GPU) or vllm (GPU)."}
    )
    generation_batch: int = field(
        default=64, metadata={"help": "transformers backend: most prompts per generate call (memory bound)."}
    )
    vllm_mode: str = field(
        default="colocate",
        metadata={"help": "vllm: colocate (vLLM shares each training GPU) or server (`trl vllm-serve`)."},
    )
    vllm_gpu_memory_utilization: float = field(
        default=0.3, metadata={"help": "vllm colocate: fraction of GPU memory vLLM may take."}
    )
    vllm_importance_sampling: bool = field(
        default=False,
        metadata={
            "help": "vllm: weight each token by π_train/π_vLLM, truncated or masked (TRL's correction; "
            "its mode and bounds through trl_args vllm_importance_sampling_mode / _clip_max). Off, as in "
            "the paper's veRL setup: π_old is the trainer's own log-prob of the sampled tokens. Its "
            "figures are logged under sampling/ either way."
        },
    )
    vllm_server_base_url: str | None = field(
        default=None, metadata={"help": "vllm server: base URL of `trl vllm-serve`, e.g. http://host:8000."}
    )

    # --- LoRA ---
    lora: bool = field(
        default=False, metadata={"help": "Train a LoRA adapter instead of all weights (needs peft)."}
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["all-linear"], metadata={"help": "Modules that get adapters."}
    )

    # --- logging and checkpoints ---
    logging_steps: int = field(default=1, metadata={"help": "Log every N optimizer steps."})
    save_steps: int = field(default=50, metadata={"help": "Save a checkpoint every N optimizer steps."})
    save_total_limit: int | None = field(default=3, metadata={"help": "Keep at most this many checkpoints."})
    report_to: list[str] = field(
        default_factory=lambda: ["tensorboard"],
        metadata={"help": "Where TRL also reports metrics: tensorboard, wandb, trackio, … or none."},
    )
    trl_args: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Any other trl.GRPOConfig field (e.g. deepspeed, vllm_importance_sampling_mode)."},
    )

    def __post_init__(self) -> None:
        # Unset evaluation sampling takes the task's (an unknown task is left for `validate` to report), then
        # AgentSettings resolves `recall` and `answer_metric` the same way and checks every field's bounds.
        temperature, top_p = self._task().eval_sampling
        if self.eval_temperature is None:
            self.eval_temperature = temperature
        if self.eval_top_p is None:
            self.eval_top_p = top_p
        super().__post_init__()

    def _task(self) -> Task:
        return TASKS.get(self.task, TASKS[MASKED_ENTITY])

    def _check_settings(self) -> None:
        super()._check_settings()
        positive = ("max_steps", "episodes_per_step", "gradient_accumulation_steps", "max_sampling_rounds",
                "generation_batch", "eval_samples")  # fmt: skip
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not (0.0 <= self.epsilon < 1.0 and self.epsilon_high >= 0.0):
            raise ConfigError(
                f"epsilon must be in [0, 1) and epsilon_high >= 0, got {self.epsilon}, {self.epsilon_high}"
            )
        if self.beta < 0 or self.learning_rate <= 0:
            raise ConfigError(
                f"beta must be >= 0 and learning_rate > 0, got {self.beta}, {self.learning_rate}"
            )
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.vllm_mode not in VLLM_MODES:
            raise ConfigError(f"vllm_mode must be one of {', '.join(VLLM_MODES)}, got {self.vllm_mode!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.eval_steps < 0:
            raise ConfigError(f"eval_steps must be non-negative, got {self.eval_steps}")
        if self.corpus_tokenizer not in ("check", "recount", "ignore"):
            raise ConfigError(
                f"corpus_tokenizer must be one of check, recount, ignore, got {self.corpus_tokenizer!r}"
            )

    @property
    def updates_per_step(self) -> int:
        """Optimizer steps per rollout batch (PPO mini-batches)."""
        return self.episodes_per_step // (self.update_episodes or self.episodes_per_step)

    def trl_kwargs(self, world_size: int = 1, dtype: str = "float32", cpu: bool = True) -> dict[str, Any]:
        """The `trl.GRPOConfig` fields memtrain sets from this config (before `trl_args`), for `world_size`
        processes training in `dtype`. These fields are memtrain's: `trl_args` may not set them."""
        updates = self.updates_per_step
        per_process = self.episodes_per_step // world_size * self.group_size
        micro_steps = updates * self.gradient_accumulation_steps
        return dict(
            output_dir=self.output_dir,
            seed=self.seed,
            # TRL counts optimizer steps; a memtrain step (one rollout batch) makes `updates` of them.
            max_steps=self.max_steps * updates,
            learning_rate=self.learning_rate,
            lr_scheduler_type=self.lr_scheduler_type,
            warmup_steps=self.warmup_steps * updates if self.warmup_steps >= 1 else self.warmup_steps,
            weight_decay=self.weight_decay,
            max_grad_norm=self.max_grad_norm,
            beta=self.beta,
            epsilon=self.epsilon,
            epsilon_high=self.epsilon_high,
            loss_type="grpo",  # token-mean per row, then mean over rows (MemTrainer rescales to real rows)
            scale_rewards="group" if self.scale_rewards else "none",
            num_iterations=1,
            temperature=self.temperature,
            top_p=self.top_p,
            num_generations=self.group_size,
            # TRL counts a batch in repeated episodes: G1 copies of each of this process's episodes per step,
            # loaded over steps_per_generation micro-steps (MemTrainer then deals the rows it samples into
            # `updates` mini-batches of gradient_accumulation_steps micro-batches).
            per_device_train_batch_size=per_process // micro_steps,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            steps_per_generation=micro_steps,
            max_completion_length=self.response_tokens,
            shuffle_dataset=False,  # the episode stream is already shuffled, reproducibly
            disable_dropout=True,
            activation_checkpointing=self.gradient_checkpointing,  # TRL's GRPOConfig would default it on
            bf16=dtype == "bfloat16",
            model_init_kwargs={"dtype": dtype},
            use_vllm=self.backend == "vllm",
            vllm_mode=self.vllm_mode,
            vllm_gpu_memory_utilization=self.vllm_gpu_memory_utilization,
            vllm_server_base_url=self.vllm_server_base_url,
            vllm_max_model_length=self.context_tokens,
            vllm_importance_sampling_correction=self.vllm_importance_sampling,
            logging_steps=self.logging_steps * updates,  # one log line per memtrain step
            save_strategy="steps",
            save_steps=self.save_steps * updates,  # checkpoints between rollout batches only
            save_total_limit=self.save_total_limit,
            report_to=self.report_to,
            disable_tqdm=True,
            use_cpu=cpu,
        )

    def _check_budgets(self) -> None:
        """The token budgets of one call fit `context_tokens` (what a call holds depends on the task)."""
        if self.task == SEARCH_QA:  # the questions, the kept turns with their observations, a new response
            kept = 1 if self.history == "constant" else max(self.max_turns - 1, 1)
            turn = self.response_tokens + self.observation_tokens + SEARCH_TURN_OVERHEAD
            budgets = self.problem_tokens + kept * turn + self.response_tokens
            if budgets > self.context_tokens:
                raise ConfigError(
                    f"token budgets do not fit: problem_tokens {self.problem_tokens} + {kept} kept turn(s) × "
                    f"(response_tokens {self.response_tokens} + observation_tokens {self.observation_tokens} "
                    f"+ {SEARCH_TURN_OVERHEAD} of tags) + response_tokens = {budgets} > context_tokens "
                    f"{self.context_tokens}"
                )
            return
        budgets = self.problem_tokens + self.chunk_tokens + self.memory_tokens + self.response_tokens
        if budgets > self.context_tokens:
            raise ConfigError(
                f"token budgets do not fit: problem_tokens {self.problem_tokens} + chunk_tokens "
                f"{self.chunk_tokens} + memory_tokens {self.memory_tokens} + response_tokens "
                f"{self.response_tokens} = {budgets} > context_tokens {self.context_tokens}"
            )
        if self.memory_tokens > self.response_tokens:
            raise ConfigError(
                f"memory_tokens ({self.memory_tokens}) exceeds response_tokens ({self.response_tokens}): a "
                "memory is a response, so it could never fill its budget"
            )

    def validate(self) -> None:
        """Raise ConfigError for a setting that cannot work; loads no model. (Each field's own bounds were
        checked at construction; they are checked again here, for a config changed since.)"""
        self._check_settings()
        task = get_task(self.task)
        # What training needs beyond what a rollout accepts: a group advantage needs two samples, and
        # greedy groups would all be alike.
        if self.group_size < 2:
            raise ConfigError(
                f"group_size (G1) must be at least 2 for a group advantage, got {self.group_size}"
            )
        if self.recall and self.recall_samples < 2:
            raise ConfigError(f"recall_samples (G2) must be at least 2, got {self.recall_samples}")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0 in training, got {self.temperature}")
        self._check_budgets()
        if (self.dense_weight or self.dense_recall_weight) and self.backend != "transformers":
            raise ConfigError(
                "dense_weight / dense_recall_weight score the gold answer teacher-forced, which only the "
                "transformers backend does; set backend: transformers or turn the dense reward off"
            )
        # The agent exactly as training and held-out evaluation build it (eval_samples, eval_temperature, …).
        agent_config(self)
        agent_config(self, evaluation=True)
        if self.update_episodes is not None and (
            self.update_episodes < 1 or self.episodes_per_step % self.update_episodes
        ):
            raise ConfigError(
                f"update_episodes ({self.update_episodes}) must be a positive divisor of episodes_per_step "
                f"({self.episodes_per_step}): each rollout batch is cut into equal policy updates"
            )
        if self.eval_episodes > self.held_out_episodes:
            raise ConfigError(
                f"eval_episodes ({self.eval_episodes}) must come from the held-out episodes "
                f"(held_out_episodes={self.held_out_episodes}); raise held_out_episodes"
            )
        self._validate_trl_args()
        task.check(self)
        self._validate_model()

    def _validate_trl_args(self) -> None:
        from trl import GRPOConfig

        known = {f.name for f in dataclasses.fields(GRPOConfig) if f.init}
        unknown = sorted(set(self.trl_args) - known)
        if unknown:
            raise ConfigError(f"trl_args: unknown trl.GRPOConfig field(s) {', '.join(unknown)}")
        owned = sorted(set(self.trl_args) & owned_trl_fields())
        if owned:
            raise ConfigError(
                f"trl_args: {', '.join(owned)} {'is' if len(owned) == 1 else 'are'} set by memtrain from its "
                "own config keys (memtrain train --help lists them), not through trl_args"
            )
        for name, (accepted, why) in _UNSUPPORTED_TRL_FIELDS.items():
            if name in self.trl_args and self.trl_args[name] != accepted:
                raise ConfigError(
                    f"trl_args: {name}={self.trl_args[name]!r} is not supported (only {accepted!r}): {why}"
                )

    def _validate_model(self) -> None:
        if not self.model:
            raise ConfigError("model: not set")
        if _looks_local(self.model) and not Path(self.model).exists():
            raise ConfigError(f"model: {self.model}: no such file or folder")


def agent_config(config: TrainConfig, evaluation: bool = False) -> AgentConfig:
    """The memory agent's settings for training (or, with `evaluation`, for held-out evaluation): every
    :class:`AgentSettings` field of `config` as it is, and what a rollout sets besides (the run's seed, the
    task's problem for rows without one); evaluation samples `eval_samples` trajectories and recall samples
    with `eval_temperature` and `eval_top_p`."""
    settings = {f.name: getattr(config, f.name) for f in dataclasses.fields(AgentSettings)}
    if evaluation:
        settings.update(
            group_size=config.eval_samples,
            recall_samples=config.eval_samples,
            temperature=config.eval_temperature,
            top_p=config.eval_top_p,
        )
    return AgentConfig(
        **settings,
        problem=get_task(config.task).default_problem or "",
        seed=config.seed,
        # Held-out evaluation always measures the gold log-likelihood where the backend can score it.
        score_gold=evaluation and config.backend == "transformers",
    )


def owned_trl_fields() -> set[str]:
    """The GRPOConfig fields memtrain sets itself (`TrainConfig.trl_kwargs`) or derives from them."""
    return set(TrainConfig().trl_kwargs()) | _DERIVED_TRL_FIELDS


def _looks_local(model: str) -> bool:
    """A path rather than an asset name or a Hub id (`org/name`)."""
    return model.startswith((".", "/", "~")) or model.endswith(".gguf") or model.count("/") > 1
