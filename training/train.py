"""The bundled trainer: (tiny model build) → (pretraining on whole dialogues) → SFT warm start (TRL SFTTrainer) →
GRPO (TRL GRPOTrainer).

Layout of the output dir: `base/` (the tiny model, when built), `pretrain/`, `sft/`, `grpo/` (checkpoints with tokenizer),
`reward_curve.json` + `reward_curve.png`, `train_summary.json`, `runs/` (tensorboard, when reported).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from speakrl.pipeline.errors import TrainingError
from speakrl.pipeline.io import atomic_write_text
from speakrl.schemas.dialogue import Dialogue
from speakrl.training.config import SpeakrlConfig
from speakrl.training.data import corpus_texts, decision_rows, episode_rows, load_dialogues
from speakrl.training.prompts import render_prompt, render_target, with_instructions
from speakrl.training.rewards import get_rewards

logger = logging.getLogger(__name__)


def resolve_model(name_or_path: str | None) -> str:
    """A local checkpoint dir or a Hub id; a local-looking path that does not exist is an error."""
    if not name_or_path:
        raise TrainingError("the recipe sets no model_name_or_path")
    path = Path(name_or_path)
    if path.exists():
        if not (path / "config.json").is_file():
            raise TrainingError(f"model path {name_or_path!r} has no config.json; pass a checkpoint directory")
        return str(path)
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") != 1:
        raise TrainingError(f"model path {name_or_path!r} does not exist")
    return name_or_path


def build_base(cfg: SpeakrlConfig, model_name: str | None, dialogues: list[Dialogue], out: Path) -> str:
    """The starting checkpoint: the tiny model built on the training text, or the recipe's model."""
    if model_name == "tiny":
        from speakrl.training.tiny import build_tiny, episode_texts, training_texts

        kwargs = dict(cfg.tiny_model)
        vocab = int(kwargs.pop("vocab_size", 4096))
        base = out / "base"
        if not (base / "config.json").is_file():
            # Train the BPE on what the model will read: rendered prompts (template boilerplate, instructions, tool
            # specs) and gold turns, plus the raw dialogue text.
            rows = decision_rows(dialogues)
            if cfg.mode == "episode":  # what the episodes read: the tools' JSON block, native calls, ask_user
                texts = episode_texts(rows, episode_tools(cfg, sorted({r["domain"] for r in rows})))
            else:
                texts = training_texts(rows, cfg.protocol, style=cfg.prompt_style)
            texts += list(corpus_texts(dialogues))
            build_tiny(base, texts, vocab_size=vocab, **kwargs)
            save_settings(cfg, base)
        return str(base)
    return resolve_model(model_name)


def _limit(rows: list[dict[str, Any]], n: int | None, seed: int) -> list[dict[str, Any]]:
    if n is None or len(rows) <= n:
        return rows
    import random

    rng = random.Random(seed)
    return rng.sample(rows, n)


def split_for_grpo(dialogues: list[Any], share: float, seed: int) -> tuple[list[Any], list[Any]]:
    """The dialogues for pretraining and SFT, and those kept for GRPO's prompts: `share` of the scenarios (whole
    scenarios, drawn by seed), so no GRPO prompt is a turn of a dialogue the warm start was trained on. With no share,
    both stages get every dialogue.

    >>> from types import SimpleNamespace as D
    >>> warm, kept = split_for_grpo([D(scenario_id=f"s{i % 4}") for i in range(8)], 0.5, 0)
    >>> len(warm), len(kept), {d.scenario_id for d in warm} & {d.scenario_id for d in kept}
    (4, 4, set())
    """
    if not share:
        return dialogues, dialogues
    import random

    scenarios = sorted({d.scenario_id for d in dialogues})
    kept = set(random.Random(seed).sample(scenarios, round(share * len(scenarios))))
    return [d for d in dialogues if d.scenario_id not in kept], [d for d in dialogues if d.scenario_id in kept]


def repeat_clarify(rows: list[dict[str, Any]], times: float, seed: int) -> list[dict[str, Any]]:
    """Rows with each clarify row `times` times (2.5: twice, and a third time for half of them, drawn by seed).

    >>> rows = [{"act": "clarify"}] * 4 + [{"act": "tool_call"}] * 4
    >>> [r["act"] for r in repeat_clarify(rows, 1.5, 0)].count("clarify")
    6
    """
    import random

    clarify = [r for r in rows if r["act"] == "clarify"]
    whole, part = int(times), times - int(times)
    extra = clarify * (whole - 1) + random.Random(seed).sample(clarify, round(part * len(clarify)))
    return rows + extra


def sft_dataset(rows: list[dict[str, Any]], tokenizer: Any, protocol: str, reasoning: bool = True,
                style: str = "chat_template") -> Any:
    from datasets import Dataset

    if not reasoning:
        rows = [{**r, "gold_reasoning": ""} for r in rows]
    return Dataset.from_list(
        [{"prompt": render_prompt(tokenizer, r["history"], r["tools"], protocol, style), "completion": render_target(tokenizer, r, protocol)}
         for r in rows]
    )


def environment_tools(env_class: type) -> list[Any]:
    """The tools TRL gives an episode of `env_class`: its public methods, in TRL's order (inspect.getmembers)."""
    import inspect

    instance = env_class()
    return [getattr(instance, name) for name, _ in inspect.getmembers(env_class, predicate=inspect.isfunction)
            if name not in ("reset", "get_reward") and not name.startswith("_")]


def episode_tools(cfg: SpeakrlConfig, domains: list[str]) -> dict[str, list[Any]]:
    """Each domain's episode tools (`environment_tools` of its environment in the recipe's catalog)."""
    from speakrl.pipeline.catalog import load_catalog
    from speakrl.training.env import environment_factories

    envs = environment_factories(load_catalog(cfg.catalog), domains, cfg.turn_cost)
    return {name: environment_tools(cls) for name, cls in envs.items()}


def episode_sft_dataset(rows: list[dict[str, Any]], tokenizer: Any, cfg: SpeakrlConfig) -> Any:
    """SFT data for episode mode: decision rows in the protocol the episodes use (`prompts.render_episode_example`)."""
    from datasets import Dataset

    from speakrl.training.prompts import render_episode_example

    tools = episode_tools(cfg, sorted({r["domain"] for r in rows}))
    examples = [render_episode_example(tokenizer, r, tools[r["domain"]]) for r in rows]
    return Dataset.from_list([{"prompt": p, "completion": c} for p, c in examples])


def save_settings(cfg: SpeakrlConfig, model_dir: str | Path) -> None:
    """What evaluation must know to prompt a checkpoint as it was trained: `speakrl.json` beside its weights."""
    protocol = "native" if cfg.mode == "episode" else cfg.protocol  # episodes are native tool calls (training.env)
    atomic_write_text(Path(model_dir) / "speakrl.json", json.dumps({"protocol": protocol, "prompt_style": cfg.prompt_style, "mode": cfg.mode}))


def grpo_dataset(rows: list[dict[str, Any]], tokenizer: Any, cfg: SpeakrlConfig) -> Any:
    """Decision mode: text prompts (rendered with each row's own tools) + the reward columns. Episode mode:
    conversational prompts (system + opening) routed to their domain's environment."""
    from datasets import Dataset

    if cfg.mode == "decision":
        data = [{**r, "prompt": render_prompt(tokenizer, r["history"], r["tools"], cfg.protocol, cfg.prompt_style), "protocol": cfg.protocol}
                for r in rows]
    else:
        data = [{**r, "prompt": with_instructions(json.loads(r["history"]), "native")} for r in rows]
    return Dataset.from_list(data)


def pretrain_texts(dialogues: list[Dialogue], tokenizer: Any, cfg: SpeakrlConfig) -> list[str]:
    """Whole training dialogues as the prompts render their history (the system line, the tools, every turn with
    native calls and results): what a model built from scratch reads before SFT, as a real base model read text
    before anyone fine-tuned it. No protocol turns: `<clarify>` and the decision token are left to SFT."""
    from speakrl.training.data import chat_messages
    from speakrl.training.prompts import as_episode

    env_tools = episode_tools(cfg, sorted({d.domain for d in dialogues})) if cfg.mode == "episode" else {}
    texts = []
    for d in dialogues:
        messages = chat_messages(d.messages)
        if cfg.mode == "episode":  # as episodes read them: the environment's tools, questions as ask_user calls
            text = render_prompt(tokenizer, as_episode(messages), env_tools[d.domain], "native", add_generation_prompt=False)
        else:
            text = render_prompt(tokenizer, messages, [t.model_dump() for t in d.tools], cfg.protocol, cfg.prompt_style,
                                 add_generation_prompt=False)
        texts.append(text.rstrip("\n"))  # ends with the end-of-turn token, so TRL adds no second one
    return texts


def score_labelled_positions_only() -> None:
    """Make TRL's fused LM head project only the positions that carry a label on CPU, as it does on GPUs.

    On a device without Triton, TRL scores every position of a batch (prompt and padding too) so that tile shapes do
    not change from batch to batch and trigger a recompilation on compiled backends such as Neuron. Eager CPU compiles
    nothing, and the labelled positions alone give the same log-probabilities: on the tiny recipe (SFT's loss is on
    ~30 completion tokens after a ~210-token prompt) SFT runs 1.6x faster and GRPO 1.4x (training/README.md).
    A no-op when TRL no longer has the hook.
    """
    from trl.trainer import utils

    use_triton = getattr(utils, "_use_triton", None)
    if use_triton is None or hasattr(use_triton, "trl_check"):
        return

    def compact_on(device: Any) -> bool:
        return device.type == "cpu" or use_triton(device)

    compact_on.trl_check = use_triton  # type: ignore[attr-defined]
    utils._use_triton = compact_on


def _fit(cfg: SpeakrlConfig, model_path: str, tokenizer: Any, dataset: Any, out_dir: Path, overrides: dict[str, Any],
         **fixed: Any) -> str:
    """Train `model_path` on `dataset` with TRL's SFTTrainer and save the result (weights, tokenizer, speakrl.json,
    log history) in `out_dir`."""
    from trl import SFTConfig, SFTTrainer

    settings = {
        "output_dir": str(out_dir),
        "report_to": cfg.report_to,
        "seed": cfg.seed,
        "bf16": cfg.bf16,
        "activation_checkpointing": cfg.activation_checkpointing,
        "logging_steps": cfg.logging_steps,
        "save_strategy": "no",
        "dataloader_num_workers": cfg.dataloader_num_workers,
        "dataloader_pin_memory": cfg.dataloader_pin_memory,
        **fixed,
        **overrides,
    }
    args = SFTConfig(**settings)
    score_labelled_positions_only()
    trainer = SFTTrainer(model=model_path, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    trainer.save_model(args.output_dir)
    tokenizer.save_pretrained(args.output_dir)
    save_settings(cfg, args.output_dir)
    _save_history(trainer.state.log_history, out_dir / "log_history.json")
    return args.output_dir


def run_pretrain(cfg: SpeakrlConfig, model_path: str, dialogues: list[Dialogue], out: Path) -> str:
    """Language modelling (loss on every token) on whole training dialogues (`pretrain_texts`)."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    dataset = Dataset.from_list([{"text": t} for t in pretrain_texts(dialogues, tokenizer, cfg)])
    return _fit(cfg, model_path, tokenizer, dataset, out / "pretrain", cfg.pretrain, dataset_text_field="text")


def run_sft(cfg: SpeakrlConfig, model_path: str, rows: list[dict[str, Any]], out: Path) -> str:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    rows = repeat_clarify(rows, cfg.sft_clarify_repeat, cfg.seed)
    if cfg.mode == "episode":  # warm start in the episodes' own protocol: native calls, questions through ask_user
        dataset = episode_sft_dataset(rows, tokenizer, cfg)
    else:
        dataset = sft_dataset(rows, tokenizer, cfg.protocol, cfg.sft_reasoning, cfg.prompt_style)
    return _fit(cfg, model_path, tokenizer, dataset, out / "sft", cfg.sft, completion_only_loss=True)


def length_grouped_order(lengths: list[int], batch_size: int, seed: int) -> list[int]:
    """An order of rows in which each batch of `batch_size` consecutive rows has similar lengths (transformers'
    length grouping: sorted within random mega-batches), with the full batches shuffled, so training does not run
    from the longest rows to the shortest, and a partial batch last (GRPO's sampler drops it).

    >>> lengths = [10 + 90 * (i % 2) for i in range(64)]  # short and long rows, alternating
    >>> order = length_grouped_order(lengths, batch_size=4, seed=0)
    >>> padded = lambda order: sum(max(lengths[i] for i in order[j: j + 4]) for j in range(0, 64, 4))
    >>> sorted(order) == list(range(64)), padded(list(range(64))), padded(order)
    (True, 1600, 1060)
    """
    if not lengths:  # transformers' grouping fails on no rows
        return []
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    generator = torch.Generator().manual_seed(seed)
    grouped = get_length_grouped_indices(lengths, batch_size, mega_batch_mult=4, generator=generator)
    batches = [grouped[i: i + batch_size] for i in range(0, len(grouped), batch_size)]
    partial = [batches.pop()] if len(batches[-1]) < batch_size else []
    shuffled = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return [i for batch in shuffled + partial for i in batch]


def build_grpo_trainer(cfg: SpeakrlConfig, model_path: str, rows: list[dict[str, Any]], peft_config: Any = None) -> Any:
    """A GRPOTrainer for the recipe (decision or episode mode), not yet trained: the 'dry start'."""
    from transformers import AutoTokenizer
    from trl import GRPOTrainer

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    dataset = grpo_dataset(rows, tokenizer, cfg)
    if cfg.train_sampling_strategy == "group_by_length" and cfg.mode == "decision":
        # GRPOTrainer's own sampler ignores this setting; a step's prompts are padded to the longest of them, so
        # prompts of similar length make a step's generation and backward pass shorter.
        prompts_per_step = cfg.generation_batch_size // cfg.num_generations
        lengths = [len(ids) for ids in tokenizer(list(dataset["prompt"]), add_special_tokens=False)["input_ids"]]
        dataset = dataset.select(length_grouped_order(lengths, prompts_per_step, cfg.seed))
        cfg.shuffle_dataset = False  # the order above is already shuffled
    elif cfg.train_sampling_strategy == "group_by_length":
        logger.info("episode mode: GRPO draws prompts at random (train_sampling_strategy applies to decision mode)")
    kwargs: dict[str, Any] = {}
    reward_funcs = get_rewards(cfg.reward_funcs)
    score_labelled_positions_only()
    if cfg.mode == "episode":
        from speakrl.pipeline.catalog import load_catalog
        from speakrl.training.env import environment_factories

        catalog = load_catalog(cfg.catalog)
        kwargs["environment_factory"] = environment_factories(catalog, sorted({r["environment"] for r in rows}), cfg.turn_cost)
        cfg.reward_weights = None  # the environment's get_reward is the only reward (TRL gives it weight 1)
    return GRPOTrainer(
        model=model_path,
        reward_funcs=reward_funcs or None,
        args=cfg,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        **kwargs,
    )


def run_grpo(cfg: SpeakrlConfig, model_path: str, rows: list[dict[str, Any]], out: Path, peft_config: Any = None) -> str:
    trainer = build_grpo_trainer(cfg, model_path, rows, peft_config)
    trainer.train()
    final = out / "grpo"
    trainer.save_model(str(final))
    trainer.processing_class.save_pretrained(str(final))
    save_settings(cfg, final)
    _save_history(trainer.state.log_history, out / "grpo" / "log_history.json")
    save_reward_curve(trainer.state.log_history, out)
    return str(final)


def _save_history(history: list[dict[str, Any]], path: Path) -> None:
    atomic_write_text(path, json.dumps(history, indent=1, default=str))


def reward_curve(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-step reward statistics from a GRPO trainer's log history.

    >>> reward_curve([{"step": 1, "reward": 0.5, "reward_std": 0.1, "rewards/f/mean": 0.5, "frac_reward_zero_std": 0.0},
    ...               {"step": 2, "train_runtime": 3.0}])["reward"]
    [0.5]
    """
    logs = [h for h in history if "reward" in h]
    keys = sorted({k for h in logs for k in h if k.startswith("rewards/") and k.endswith("/mean")})
    curve: dict[str, Any] = {
        "step": [h.get("step") for h in logs],
        "reward": [h["reward"] for h in logs],
        "reward_std": [h.get("reward_std") for h in logs],
        "frac_reward_zero_std": [h.get("frac_reward_zero_std") for h in logs],
    }
    for k in keys:
        curve[k] = [h.get(k) for h in logs]
    return curve


def save_reward_curve(history: list[dict[str, Any]], out: Path) -> tuple[Path, Path]:
    """Write reward_curve.json and reward_curve.png (matplotlib, Agg) into `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = reward_curve(history)
    json_path, png_path = out / "reward_curve.json", out / "reward_curve.png"
    atomic_write_text(json_path, json.dumps(curve, indent=1))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(curve["step"], curve["reward"], label="total reward", linewidth=1, color="black", alpha=0.4)
    window = max(1, len(curve["reward"]) // 10)  # a few prompts per step make the raw curve noisy
    smooth = [sum(curve["reward"][max(0, i - window + 1): i + 1]) / len(curve["reward"][max(0, i - window + 1): i + 1])
              for i in range(len(curve["reward"]))]
    ax1.plot(curve["step"], smooth, label=f"total reward ({window}-step mean)", linewidth=2.5, color="black")
    for k, v in curve.items():
        if k.startswith("rewards/"):
            ax1.plot(curve["step"], [math.nan if x is None else x for x in v], label=k.split("/")[1], alpha=0.7)
    ax1.set_xlabel("step")
    ax1.set_ylabel("mean reward")
    ax1.legend(fontsize=7)
    ax2.plot(curve["step"], [math.nan if x is None else x for x in curve["frac_reward_zero_std"]], color="gray")
    ax2.set_xlabel("step")
    ax2.set_ylabel("frac_reward_zero_std")
    fig.tight_layout()
    fig.savefig(png_path, dpi=90)
    plt.close(fig)
    return json_path, png_path


def model_init_kwargs(model_args: Any) -> dict[str, Any]:
    """How TRL should load the model (ModelConfig's dtype and attention implementation)."""
    out = {}
    if getattr(model_args, "dtype", None) not in (None, "auto"):
        out["dtype"] = model_args.dtype
    if getattr(model_args, "attn_implementation", None):
        out["attn_implementation"] = model_args.attn_implementation
    return out


def train(cfg: SpeakrlConfig, model_args: Any, dataset: str, config: str | None = None) -> dict[str, Any]:
    """Run the recipe's stages on `dataset` (its config `config`, None: the default); returns the summary written to
    train_summary.json."""
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    splits = load_dialogues(dataset, config=config)
    train_dialogues = splits.get("train") or []
    if not train_dialogues:
        raise TrainingError(f"dataset {dataset!r} has no training dialogues")
    started = time.time()
    model_path = build_base(cfg, model_args.model_name_or_path, train_dialogues, out)  # its vocabulary: every dialogue
    summary: dict[str, Any] = {"dataset": dataset, "base": model_path, "protocol": cfg.protocol, "mode": cfg.mode}
    # GRPO's own share of the dialogues, when there is a warm start to keep them from
    share = cfg.grpo_holdout if "grpo" in cfg.stages and {"pretrain", "sft"} & set(cfg.stages) else 0.0
    warm_dialogues, grpo_dialogues = split_for_grpo(train_dialogues, share, cfg.seed)
    if share:
        if not warm_dialogues or not grpo_dialogues:
            raise TrainingError(f"grpo_holdout {share} leaves no training dialogue for "
                                f"{'GRPO' if warm_dialogues else 'the warm start'} (of {len(train_dialogues)}); use a "
                                "larger dataset or another share")
        summary.update(warm_start_dialogues=len(warm_dialogues), grpo_dialogues=len(grpo_dialogues))
    rows = _limit(decision_rows(warm_dialogues), cfg.max_train_samples, cfg.seed)
    init_kwargs = model_init_kwargs(model_args)
    if init_kwargs:
        cfg.model_init_kwargs = {**init_kwargs, **(cfg.model_init_kwargs or {})}
        for stage in (cfg.pretrain, cfg.sft):
            stage.setdefault("model_init_kwargs", dict(cfg.model_init_kwargs))
    peft_config = None
    if model_args.use_peft:
        from trl import get_peft_config

        peft_config = get_peft_config(model_args)
    if "pretrain" in cfg.stages:
        t = time.time()
        model_path = run_pretrain(cfg, model_path, _limit(warm_dialogues, cfg.max_train_samples, cfg.seed), out)
        summary.update(pretrain=model_path, pretrain_seconds=round(time.time() - t, 1))
    if "sft" in cfg.stages:
        t = time.time()
        model_path = run_sft(cfg, model_path, rows, out)
        summary.update(sft=model_path, sft_seconds=round(time.time() - t, 1))
    if "grpo" in cfg.stages:
        t = time.time()
        if cfg.mode == "decision":
            own = _limit(decision_rows(grpo_dialogues), cfg.max_train_samples, cfg.seed) if share else rows
            grpo_rows = repeat_clarify(own, cfg.grpo_clarify_repeat, cfg.seed)
        else:
            grpo_rows = _limit(episode_rows(grpo_dialogues), cfg.max_train_samples, cfg.seed)
        model_path = run_grpo(cfg, model_path, grpo_rows, out, peft_config)
        summary.update(
            grpo=model_path,
            grpo_seconds=round(time.time() - t, 1),
            reward_curve_json=str(out / "reward_curve.json"),
            reward_curve_png=str(out / "reward_curve.png"),
        )
    summary.update(final=model_path, seconds=round(time.time() - started, 1))
    atomic_write_text(out / "train_summary.json", json.dumps(summary, indent=1))
    return summary
