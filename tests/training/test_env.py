import json

import pytest

from speakrl.pipeline.catalog import load_catalog
from speakrl.pipeline.errors import TrainingError
from speakrl.training.data import episode_rows
from speakrl.training.env import environment_factories, user_reply


@pytest.fixture(scope="module")
def catalog():
    return load_catalog("builtin")


def _ambiguous_row(splits):
    rows = [r for r in episode_rows(splits["train"]) if r["needs_clarification"]]
    return rows[0]


def test_ask_user_answers_from_the_hidden_goal(catalog, splits):
    row = _ambiguous_row(splits)
    env = environment_factories(catalog, [row["environment"]])[row["environment"]]()
    env.reset(**row)
    goal = json.loads(row["goal"])
    domain = catalog.domain(row["environment"])
    # Ask about every goal slot by its own name: the reply carries each goal value.
    for slot, value in goal.items():
        reply = env.ask_user(f"What {domain.slot(slot).name.replace('_', ' ')} would you like?")
        assert str(value).lower() in reply.lower(), (slot, reply)
    assert env.ask_user("Is there anything else?").startswith("Sorry")
    assert env.turns == len(goal) + 1 and len(env.questions) == len(goal) + 1


def test_user_reply_uses_the_slot_mention(catalog):
    domain = next(d for d in catalog.domains if any(s.mention for s in d.slots))
    slot = next(s for s in domain.slots if s.mention)
    value = slot.pool()[0] if slot.pool() else "x"
    reply = user_reply(f"What {slot.name.replace('_', ' ')}?", {slot.name: value}, domain.slots)
    assert slot.mention.format(value=value).lower() in reply.lower()


def test_tools_run_and_the_reward_is_task_completion_minus_turn_cost(catalog, splits):
    row = _ambiguous_row(splits)
    envs = environment_factories(catalog, [row["environment"]], turn_cost=0.1)
    env = envs[row["environment"]]()
    env.reset(**row)
    goal_args = json.loads(row["goal_args"])
    tool = getattr(env, row["goal_tool"])
    # A wrong call first: the simulator runs it (an error or a result), it costs a turn and completes nothing.
    wrong = {k: v for k, v in goal_args.items()}
    first_key = next(iter(wrong))
    wrong[first_key] = "definitely not a value"
    json.loads(tool(**wrong))
    assert not env.completed
    partial = env.get_reward()
    assert 0 < partial + 0.1 <= 0.5  # half the argument F1, minus one turn
    result = json.loads(tool(**goal_args))
    assert "error" not in result
    assert env.completed
    assert env.get_reward() == pytest.approx(1.0 - 0.1 * 2)
    env.reset(**row)  # reset clears the episode
    assert env.turns == 0 and not env.completed and env.get_reward() == 0.0


def test_environment_methods_render_as_tool_schemas(catalog):
    from transformers.utils import get_json_schema

    envs = environment_factories(catalog, [d.name for d in catalog.domains])
    for name, cls in envs.items():
        env = cls()
        domain = catalog.domain(name)
        for tool in domain.tools:
            schema = get_json_schema(getattr(env, tool.name))["function"]
            assert schema["name"] == tool.name
            assert set(schema["parameters"]["required"]) == set(tool.required)
            assert set(schema["parameters"]["properties"]) == set(tool.slots)
        assert get_json_schema(env.ask_user)["function"]["parameters"]["required"] == ["question"]


def test_unknown_domain_is_an_error(catalog):
    with pytest.raises(TrainingError, match="catalog does not define"):
        environment_factories(catalog, ["spaceships"])


@pytest.mark.slow
def test_grpo_trainer_runs_episodes_with_environment_factory(catalog, splits, tiny_dir, tmp_path):
    """TRL's multi-environment mode with our environments: one real GRPO step, scored by get_reward."""
    from speakrl.training.config import load_recipe
    from speakrl.training.train import build_grpo_trainer

    rows = episode_rows(splits["train"])[:4]
    cfg, _ = load_recipe("tiny-cpu", output_dir=str(tmp_path), max_steps=1, overrides=[
        "mode=episode", "reward_funcs=[]", "reward_weights=null", "per_device_train_batch_size=4", "num_generations=2",
        "max_completion_length=24", "report_to=none", "max_tool_calling_iterations=2"])
    trainer = build_grpo_trainer(cfg, str(tiny_dir), rows)
    from speakrl.training.train import environment_tools

    # Each domain's prompt is rendered with that domain's tools plus ask_user.
    for row in rows:
        names = {t.__name__ for t in trainer._env_tools[row["environment"]]}
        assert "ask_user" in names and row["goal_tool"] in names
        # The episode SFT warm start renders the same tools in the same order.
        env_class = environment_factories(catalog, [row["environment"]])[row["environment"]]
        assert [t.__name__ for t in environment_tools(env_class)] == [t.__name__ for t in trainer._env_tools[row["environment"]]]
    trainer.train()
    logged = [h for h in trainer.state.log_history if "reward" in h]
    env_keys = {k for h in logged for k in h if k.startswith("rewards/") and k.endswith("Environment/mean")}
    assert env_keys, logged


def test_episode_warm_start_targets_are_the_episode_protocol(splits, tiny_dir, tmp_path):
    """In episode mode SFT teaches what the episodes read: questions as ask_user calls, actions as native calls, with
    the environment's tools in the prompt, and earlier questions in the history as ask_user calls and results."""
    from transformers import AutoTokenizer

    from speakrl.training.config import load_recipe
    from speakrl.training.data import decision_rows
    from speakrl.training.protocols import parse
    from speakrl.training.train import episode_sft_dataset

    cfg, _ = load_recipe("tiny-cpu", output_dir=str(tmp_path), overrides=["mode=episode", "reward_funcs=[]", "reward_weights=null"])
    rows = decision_rows(splits["train"])[:60]
    data = episode_sft_dataset(rows, AutoTokenizer.from_pretrained(tiny_dir), cfg)
    for row, prompt, target in zip(rows, data["prompt"], data["completion"]):
        p = parse(target, "native")
        assert p.act == row["act"], (row["act"], target)
        if row["act"] == "clarify":
            assert p.call_name == "ask_user" and p.question == row["gold_content"]
        assert '"name": "ask_user"' in prompt  # the tool is offered, as TRL renders the environment's methods
        assert row["turn"] == 0 or "<tool_response>" in prompt  # earlier turns come back as tool results




def test_a_dialogue_that_spans_services_gets_one_environment_with_all_their_tools(catalog):
    """SGD dialogues such as "hotels_2+restaurants_1" book across services: the episode has every service's tools and
    the simulated user answers about every service's slots."""
    env_cls = environment_factories(catalog, ["hotels+restaurants"])["hotels+restaurants"]
    env = env_cls()
    tools = {t.name for d in ("hotels", "restaurants") for t in catalog.domain(d).tools}
    assert tools <= set(dir(env))
    env.reset(goal=json.dumps({"city": "Oakland", "cuisine": "Thai"}))
    assert "thai" in env.ask_user("What cuisine would you like?").lower()
    result = json.loads(env.find_restaurants(city="Oakland", cuisine="Thai"))
    assert "error" not in result and env.turns == 2
    with pytest.raises(TrainingError, match="nowhere"):
        environment_factories(catalog, ["hotels+nowhere"])


@pytest.mark.slow
def test_episode_grpo_from_an_episode_warm_start_has_reward_spread(tmp_path):
    """The warm start GRPO needs in episode mode: SFT in the episodes' protocol, then 2 episode GRPO steps in which the
    rollouts of one prompt score differently (some complete the booking, some do not), so the advantages are not all 0.

    A one-tool domain keeps the prompts short (~650 tokens) and 300 SFT steps on its first 4 training dialogues bring
    the policy to where it calls the tool and mostly copies the values (~2 minutes on 2 cores). At temperature 1.0 a
    warm start that has memorized its targets rolls out the same episode 4 times out of 4 (seed 1), and one that has
    not often fails every call; a hot sampler (1.5) with 8 rollouts per prompt gave groups with spread for SFT seeds
    0, 1 and 3 (with 4 rollouts, seed 0 had one such group in 2 steps)."""
    from pathlib import Path

    from speakrl.pipeline.runner import generate
    from speakrl.schemas.config import RunConfig
    from speakrl.training.config import load_recipe
    from speakrl.training.data import decision_rows, load_dialogues
    from speakrl.training.train import build_base, run_grpo, run_sft

    catalog = Path(__file__).parents[1] / "data" / "unseen_tools.json"
    run = generate(RunConfig(n=80, seed=1, catalog=str(catalog), out=str(tmp_path / "run")))
    dialogues = [d for d in load_dialogues(str(run))["train"] if d.domain == "fitness"][:4]
    assert len(dialogues) == 4
    cfg, _ = load_recipe("tiny-cpu", output_dir=str(tmp_path / "model"), max_steps=2, overrides=[
        "mode=episode", f"catalog={catalog}", "reward_funcs=[]", "reward_weights=null", "report_to=none", "seed=0",
        "tiny_model={vocab_size: 1024, hidden_size: 64, num_layers: 2, num_heads: 2, intermediate_size: 128}",
        "sft.max_steps=300", "sft.learning_rate=1e-2", "sft.per_device_train_batch_size=8", "sft.lr_scheduler_type=constant",
        "per_device_train_batch_size=16", "num_generations=8", "temperature=1.5", "max_completion_length=96",
        "max_tool_calling_iterations=3"])
    out = Path(cfg.output_dir)
    sft = run_sft(cfg, build_base(cfg, "tiny", dialogues, out), decision_rows(dialogues), out)
    run_grpo(cfg, sft, episode_rows(dialogues), out)
    steps = [h for h in json.loads((out / "grpo" / "log_history.json").read_text()) if "reward" in h]
    assert len(steps) == 2
    assert any(h["tools/call_frequency"] > 0 for h in steps), steps  # the warm start calls the environment's tools
    assert min(h["frac_reward_zero_std"] for h in steps) < 1.0, steps  # some group's rollouts scored differently
