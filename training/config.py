"""Recipes: one YAML file per setup (open-r1 style), parsed into TRL's own config classes.

`SpeakrlConfig` subclasses TRL's `GRPOConfig` only for the fields speakrl adds (protocol, rewards by name, stages,
the SFT warm start, the tiny model); model and LoRA settings go to TRL's `ModelConfig`. Unknown keys, unknown
rewards and bad values fail here, at load, with one sentence.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from trl import GRPOConfig, ModelConfig

from speakrl.pipeline.errors import ConfigError
from speakrl.training.prompts import PROMPT_STYLES
from speakrl.training.protocols import PROTOCOLS
from speakrl.training.rewards import REWARDS, get_rewards

MODES = ("decision", "episode")
STAGES = ("pretrain", "sft", "grpo")


@dataclass
class SpeakrlConfig(GRPOConfig):
    """GRPOConfig plus speakrl's fields."""

    # TRL defaults to checkpointing through the deprecated alias; recipes set `activation_checkpointing` instead.
    gradient_checkpointing: bool | None = field(default=None, metadata={"help": "Deprecated alias of activation_checkpointing."})
    protocol: str = field(default="speakrl", metadata={"help": f"Output protocol: {', '.join(PROTOCOLS)}."})
    mode: str = field(
        default="decision",
        metadata={"help": "decision: one turn per prompt (SpeakRL); episode: multi-turn with tools and ask_user."},
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: ["format", "clarify", "question", "tool_call", "answer", "turn_efficiency"],
        metadata={"help": f"Rewards by name: {', '.join(REWARDS)}. Weights go in `reward_weights`."},
    )
    stages: list[str] = field(
        default_factory=lambda: ["sft", "grpo"],
        metadata={"help": "pretrain (language modelling on whole training dialogues, for a model built from scratch), sft and/or grpo."},
    )
    prompt_style: str = field(
        default="chat_template",
        metadata={"help": f"How prompts are rendered: {', '.join(PROMPT_STYLES)} (tool signatures, no boilerplate)."},
    )
    sft_clarify_repeat: float = field(
        default=1.0,
        metadata={"help": "Times each clarify row appears in the SFT data (a fraction repeats a random share of them)."},
    )
    grpo_clarify_repeat: float = field(
        default=1.0,
        metadata={"help": "Times each clarify row appears among decision-mode GRPO prompts (balances the ask/act mix)."},
    )
    grpo_holdout: float = field(
        default=0.0,
        metadata={"help": "Share of the training dialogues (whole scenarios) kept out of pretraining and SFT for GRPO's "
                          "prompts, so GRPO learns on prompts the warm start has not fitted (0: GRPO reuses them)."},
    )
    sft: dict[str, Any] = field(default_factory=dict, metadata={"help": "SFTConfig overrides for the warm start."})
    pretrain: dict[str, Any] = field(default_factory=dict, metadata={"help": "SFTConfig overrides for the pretrain stage."})
    tiny_model: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "Size of the model built when model_name_or_path is 'tiny'."}
    )
    sft_reasoning: bool = field(
        default=True,
        metadata={"help": "Keep the gold reasoning inside <think> in SFT targets (false: an empty think block, for tiny models)."},
    )
    catalog: str = field(default="builtin", metadata={"help": "Tool catalog that runs the tools in episodes and eval."})
    turn_cost: float = field(default=0.05, metadata={"help": "Episode reward cost per assistant turn."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Cap on training prompts (per stage)."})
    eval_max_turns: int = field(default=8, metadata={"help": "Turn limit of an evaluation episode."})
    eval_max_new_tokens: int = field(default=160, metadata={"help": "Token limit of one evaluated turn."})


def recipe_names() -> list[str]:
    return sorted(
        p.name[: -len(".yaml")]
        for p in resources.files("speakrl.training").joinpath("recipes").iterdir()
        if p.name.endswith(".yaml") and not p.name.startswith("accelerate-")  # launcher configs, not recipes
    )


def recipe_path(recipe: str) -> Path:
    """A recipe by name (training/recipes/NAME.yaml) or a path to a YAML file."""
    path = Path(recipe)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    candidate = resources.files("speakrl.training").joinpath("recipes", f"{recipe}.yaml")
    if candidate.is_file():
        return Path(str(candidate))
    raise ConfigError(f"unknown recipe {recipe!r}; valid recipes: {', '.join(recipe_names())} (or a path to a YAML file)")


def _apply_override(data: dict[str, Any], override: str) -> None:
    if "=" not in override:
        raise ConfigError(f"override {override!r} is not KEY=VALUE")
    key, raw = override.split("=", 1)
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        try:  # YAML 1.1 reads "1e-4" as a string; on a command line it means the number
            value = float(value) if any(c in value.lower() for c in ".e") and value.lower() not in ("nan", "inf") else value
        except ValueError:
            pass
    parts = key.strip().split(".")
    target = data
    for part in parts[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise ConfigError(f"override {override!r} sets a field inside {part!r}, which is not a mapping")
    target[parts[-1]] = value


def load_recipe(recipe: str, output_dir: str | None = None, max_steps: int | None = None,
                overrides: list[str] | None = None) -> tuple[SpeakrlConfig, ModelConfig]:
    """Parse a recipe into (SpeakrlConfig, ModelConfig); `overrides` are KEY=VALUE strings (dots for nested keys)."""
    path = recipe_path(recipe)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"recipe {str(path)!r} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {str(path)!r} must be a mapping of settings")
    for override in overrides or []:
        _apply_override(data, override)
    if output_dir is not None:
        data["output_dir"] = str(output_dir)
    if max_steps is not None:
        data["max_steps"] = int(max_steps)
    data.setdefault("output_dir", "outputs/train")

    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    cfg_fields = {f.name for f in dataclasses.fields(SpeakrlConfig)}
    unknown = sorted(set(data) - model_fields - cfg_fields)
    if unknown:
        raise ConfigError(f"recipe {path.name} has unknown setting(s) {', '.join(unknown)}")
    # Reward names first: an unknown one is the most likely mistake and must be named even on a machine where the
    # rest of the recipe (bf16, vLLM) cannot be constructed.
    if isinstance(data.get("reward_funcs"), list):
        get_rewards([str(n) for n in data["reward_funcs"]])
    model_kwargs = {k: v for k, v in data.items() if k in model_fields and k not in cfg_fields}
    cfg_kwargs = {k: v for k, v in data.items() if k in cfg_fields}
    try:
        model_args = ModelConfig(**model_kwargs)
        cfg = SpeakrlConfig(**cfg_kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"recipe {path.name} is invalid: {str(e).splitlines()[0]}") from None
    validate(cfg)
    return cfg, model_args


def validate(cfg: SpeakrlConfig) -> None:
    if cfg.protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {cfg.protocol!r}; valid: {', '.join(PROTOCOLS)}")
    if cfg.prompt_style not in PROMPT_STYLES:
        raise ConfigError(f"unknown prompt_style {cfg.prompt_style!r}; valid: {', '.join(PROMPT_STYLES)}")
    for name in ("sft_clarify_repeat", "grpo_clarify_repeat"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be at least 1 (got {getattr(cfg, name)})")
    if not 0 <= cfg.grpo_holdout < 1:
        raise ConfigError(f"grpo_holdout is a share of the training dialogues, from 0 up to (not including) 1 "
                          f"(got {cfg.grpo_holdout})")
    if cfg.mode not in MODES:
        raise ConfigError(f"unknown mode {cfg.mode!r}; valid: {', '.join(MODES)}")
    bad_stages = [s for s in cfg.stages if s not in STAGES]
    if bad_stages or not cfg.stages:
        raise ConfigError(f"stages must be a non-empty list of {', '.join(STAGES)}; got {', '.join(map(str, cfg.stages)) or 'nothing'}")
    get_rewards(cfg.reward_funcs)  # unknown names fail here, listing the valid ones
    if cfg.mode == "decision" and not cfg.reward_funcs:
        raise ConfigError("decision mode needs at least one reward in reward_funcs")
    if cfg.mode == "episode" and cfg.reward_funcs:
        raise ConfigError(
            "episode mode is scored by the environment (task completion minus a cost per turn); set reward_funcs: [] "
            "and reward_weights: null"
        )
    if cfg.reward_weights is not None and len(cfg.reward_weights) != len(cfg.reward_funcs):
        raise ConfigError(
            f"reward_weights has {len(cfg.reward_weights)} value(s) but reward_funcs has {len(cfg.reward_funcs)}"
        )
    from trl import SFTConfig

    sft_fields = {f.name for f in dataclasses.fields(SFTConfig)}
    for stage in ("sft", "pretrain"):
        unknown = sorted(set(getattr(cfg, stage)) - sft_fields)
        if unknown:
            raise ConfigError(f"unknown SFT setting(s) {', '.join(unknown)} under {stage}")
