"""Recipes parse; the GPU recipes start (trainer constructed) with a tiny model substituted, as far as a CPU allows."""

from importlib import resources

import pytest
import yaml

from speakrl.pipeline.errors import ConfigError
from speakrl.training.config import load_recipe, recipe_names

# What a machine without a GPU must change to construct the GPU recipes' trainers: no bf16, no vLLM.
CPU = ["bf16=false", "sft.bf16=false", "use_vllm=false", "report_to=none", "dtype=float32"]


def test_recipes_are_listed():
    assert {"tiny-cpu", "qwen3-1.7b", "multi-gpu"} <= set(recipe_names())


@pytest.mark.parametrize("name", ["qwen3-1.7b", "multi-gpu"])
def test_gpu_recipes_parse(name, tmp_path):
    raw = yaml.safe_load(resources.files("speakrl.training").joinpath("recipes", f"{name}.yaml").read_text())
    assert raw["use_vllm"] is True and raw["bf16"] is True
    assert raw["vllm_mode"] == ("colocate" if name == "qwen3-1.7b" else "server")
    cfg, model_args = load_recipe(name, output_dir=str(tmp_path), overrides=CPU)
    assert model_args.model_name_or_path == "Qwen/Qwen3-1.7B"
    assert cfg.protocol == "speakrl" and len(cfg.reward_weights) == len(cfg.reward_funcs)
    assert cfg.num_generations == 8 and cfg.vllm_mode == raw["vllm_mode"]


def test_accelerate_configs_ship_with_the_recipes():
    recipes = resources.files("speakrl.training").joinpath("recipes")
    zero3 = yaml.safe_load(recipes.joinpath("accelerate-zero3.yaml").read_text())
    fsdp = yaml.safe_load(recipes.joinpath("accelerate-fsdp2.yaml").read_text())
    assert zero3["distributed_type"] == "DEEPSPEED" and zero3["deepspeed_config"]["zero_stage"] == 3
    assert fsdp["distributed_type"] == "FSDP" and fsdp["fsdp_config"]["fsdp_version"] == 2
    assert "accelerate-zero3" not in recipe_names()


@pytest.mark.parametrize(("name", "peft"), [("qwen3-1.7b", False), ("qwen3-1.7b", True), ("multi-gpu", False)])
def test_gpu_recipe_dry_start(name, peft, splits, tiny_dir, tmp_path):
    """The recipe's GRPOTrainer is constructed (model, rewards, data, LoRA) with a tiny Qwen3 in place of Qwen3-1.7B."""
    from trl import get_peft_config

    from speakrl.training.data import decision_rows
    from speakrl.training.train import build_grpo_trainer, model_init_kwargs

    cfg, model_args = load_recipe(name, output_dir=str(tmp_path), overrides=CPU + [
        f"model_name_or_path={tiny_dir}", f"use_peft={str(peft).lower()}", "max_completion_length=32"])
    cfg.model_init_kwargs = model_init_kwargs(model_args)
    peft_config = get_peft_config(model_args) if model_args.use_peft else None
    trainer = build_grpo_trainer(cfg, str(tiny_dir), decision_rows(splits["train"])[:16], peft_config)
    assert [f.__name__ for f in trainer.reward_funcs] == [f"{n}_reward" for n in cfg.reward_funcs]
    assert trainer.args.num_generations == 8
    assert len(trainer.train_dataset) == 16 and "prompt" in trainer.train_dataset.column_names
    assert (type(trainer.model).__name__ == "PeftModelForCausalLM") == peft


def test_bad_recipes(tmp_path):
    with pytest.raises(ConfigError, match="unknown recipe 'nope'; valid recipes: .*tiny-cpu"):
        load_recipe("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_name_or_path: tiny\nlearning_rat: 0.1\n")
    with pytest.raises(ConfigError, match="unknown setting.*learning_rat"):
        load_recipe(str(bad))
    with pytest.raises(ConfigError, match="protocol"):
        load_recipe("tiny-cpu", overrides=["protocol=xml"])
    with pytest.raises(ConfigError, match="reward_weights has 1"):
        load_recipe("tiny-cpu", overrides=["reward_weights=[1.0]"])
    with pytest.raises(ConfigError, match="grpo_clarify_repeat must be at least 1"):
        load_recipe("tiny-cpu", overrides=["grpo_clarify_repeat=0.5"])
    for share in ("1", "-0.1"):
        with pytest.raises(ConfigError, match="grpo_holdout is a share of the training dialogues"):
            load_recipe("tiny-cpu", overrides=[f"grpo_holdout={share}"])
    with pytest.raises(ConfigError, match="SFT setting"):
        load_recipe("tiny-cpu", overrides=["sft.epochz=3"])
    with pytest.raises(ConfigError, match="unknown SFT setting.*epochz under pretrain"):
        load_recipe("tiny-cpu", overrides=["pretrain.epochz=3"])
    with pytest.raises(ConfigError, match="stages must be"):
        load_recipe("tiny-cpu", overrides=["stages=[pretraining]"])
    with pytest.raises(ConfigError, match="episode mode is scored by the environment"):
        load_recipe("tiny-cpu", overrides=["mode=episode"])


def test_overrides_read_numbers_like_a_command_line():
    cfg, _ = load_recipe("tiny-cpu", overrides=["learning_rate=1e-4", "sft.learning_rate=3e-3", "max_steps=7"])
    assert cfg.learning_rate == 1e-4 and cfg.sft["learning_rate"] == 3e-3 and cfg.max_steps == 7
