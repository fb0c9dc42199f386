"""A real tiny SFT + GRPO run (a few steps, CPU) and evaluation of the result."""

import json
import math
from pathlib import Path

import pytest

from speakrl.training.config import load_recipe
from speakrl.training.rewards import REWARDS

TINY = [
    "report_to=none",
    "tiny_model={vocab_size: 1024, hidden_size: 64, num_layers: 1, num_heads: 2, intermediate_size: 128}",
    "pretrain.max_steps=3", "pretrain.per_device_train_batch_size=8",
    "sft.max_steps=4", "sft.per_device_train_batch_size=8",
    "per_device_train_batch_size=8", "num_generations=4", "max_completion_length=48", "max_train_samples=48",
    # A hot, flat start so the group has distinct completions and the rewards have something to tell apart.
    "temperature=1.5",
]


@pytest.fixture(scope="module")
def trained(run_dir, tmp_path_factory):
    from speakrl.training.train import train

    out = tmp_path_factory.mktemp("train") / "tiny"
    cfg, model_args = load_recipe("tiny-cpu", output_dir=str(out), max_steps=3, overrides=TINY)
    summary = train(cfg, model_args, str(run_dir))
    return out, summary


@pytest.mark.slow
def test_sft_then_grpo_logs_every_reward(trained):
    out, summary = trained
    assert Path(summary["sft"]).name == "sft" and Path(summary["final"]).name == "grpo"
    assert Path(summary["pretrain"]).name == "pretrain"
    for stage in ("base", "pretrain", "sft", "grpo"):
        assert (out / stage / "config.json").is_file()
    for stage in ("pretrain", "sft"):
        log = json.loads((out / stage / "log_history.json").read_text())
        assert any("loss" in h and math.isfinite(h["loss"]) for h in log), stage
    history = json.loads((out / "grpo" / "log_history.json").read_text())
    steps = [h for h in history if "reward" in h]
    assert len(steps) == 3
    for fn in REWARDS.values():
        key = f"rewards/{fn.__name__}/mean"
        assert any(key in h for h in steps), key
    assert all("frac_reward_zero_std" in h for h in steps)
    curve = json.loads((out / "reward_curve.json").read_text())
    assert curve["step"] == [1, 2, 3] and len(curve["reward"]) == 3
    assert (out / "reward_curve.png").stat().st_size > 1000
    assert json.loads((out / "train_summary.json").read_text())["protocol"] == "speakrl"


@pytest.mark.parametrize("share", [0.0, 0.5])
def test_grpo_holdout_keeps_grpos_scenarios_from_the_warm_start(run_dir, splits, tmp_path, monkeypatch, share):
    """With `grpo_holdout`, no GRPO prompt is a turn of a dialogue pretraining or SFT trained on; without it, GRPO
    reuses SFT's rows. The stages record what they are handed (their training is tested above)."""
    from speakrl.training import train as training

    handed = {}

    def stage(name):
        def run(cfg, model_path, data, out, *args):
            handed[name] = data
            return name
        return run

    monkeypatch.setattr(training, "build_base", lambda cfg, name, dialogues, out: "base")
    for name in ("pretrain", "sft", "grpo"):
        monkeypatch.setattr(training, f"run_{name}", stage(name))
    cfg, model_args = load_recipe("tiny-cpu", output_dir=str(tmp_path), overrides=[f"grpo_holdout={share}"])
    summary = training.train(cfg, model_args, str(run_dir))
    scenario = {d.id: d.scenario_id for d in splits["train"]}
    warm = {d.scenario_id for d in handed["pretrain"]}
    assert warm == {scenario[r["dialogue_id"]] for r in handed["sft"]}
    grpo = {scenario[r["dialogue_id"]] for r in handed["grpo"]}
    if share:
        assert not warm & grpo and warm | grpo == set(scenario.values())
        assert summary["grpo_dialogues"] == sum(s in grpo for s in scenario.values()) > 0
    else:
        assert warm == grpo == set(scenario.values()) and "grpo_dialogues" not in summary


def test_a_grpo_holdout_that_leaves_a_stage_nothing_is_one_sentence(run_dir, splits, tmp_path, monkeypatch):
    from speakrl.pipeline.errors import TrainingError
    from speakrl.training import train as training

    monkeypatch.setattr(training, "load_dialogues", lambda *a, **k: {"train": splits["train"][:1]})
    monkeypatch.setattr(training, "build_base", lambda cfg, name, dialogues, out: "base")
    cfg, model_args = load_recipe("tiny-cpu", output_dir=str(tmp_path), overrides=["grpo_holdout=0.4"])
    with pytest.raises(TrainingError, match=r"grpo_holdout 0.4 leaves no training dialogue for GRPO \(of 1\)"):
        training.train(cfg, model_args, str(run_dir))


@pytest.mark.slow
def test_eval_on_the_tiny_model(trained, run_dir):
    from speakrl.training.evaluate import LocalPolicy, evaluate

    out, _ = trained
    policy = LocalPolicy(str(out / "grpo"), "speakrl", max_new_tokens=24, batch_size=32)
    metrics = evaluate(policy, str(run_dir), "test", max_turns=2, limit=6)
    assert metrics["dialogues"] == 6 and metrics["episodes"] == 6
    for key in ("task_completion", "avg_turns", "clarify_recall", "under_asking_rate", "over_asking_rate",
                "tool_call_exact_match", "argument_f1", "format_score"):
        assert key in metrics
    assert 1 <= metrics["avg_turns"] <= 2
    assert 0.0 <= metrics["task_completion"] <= 1.0
    for key in ("forced_call_right_tool", "forced_call_argument_f1", "forced_call_exact_match"):
        assert 0.0 <= metrics[key] <= 1.0, key


@pytest.mark.slow
def test_a_turn_handed_its_start_is_scored_on_what_follows(trained, run_dir, monkeypatch):
    """`forced_call_metrics` hands the policy the start of an acting turn: the prompt the model reads ends with it, the
    turn returned is what the model wrote after it, and a call written after it is read as the turn's call."""
    from speakrl.training import evaluate as ev
    from speakrl.training.data import decision_rows, load_dialogues

    out, _ = trained
    policy = ev.LocalPolicy(str(out / "sft"), "speakrl", max_new_tokens=8, batch_size=4)
    read: list[str] = []
    encode = type(policy.tokenizer).__call__

    def reading(tokenizer, texts, **kwargs):  # the prompts as the model gets them
        read.extend(texts)
        return encode(tokenizer, texts, **kwargs)

    monkeypatch.setattr(type(policy.tokenizer), "__call__", reading)
    rows = [r for r in decision_rows(load_dialogues(str(run_dir))["test"][:4]) if r["act"] == "tool_call"]
    turns = policy.respond([ev.Conversation(json.loads(r["history"]), json.loads(r["tools"])) for r in rows], prefix=ev.ACT_PREFIX)
    assert read and all(t.endswith(ev.ACT_PREFIX) for t in read) and len(turns) == len(rows)
    assert not any(t.text.startswith("<think>") for t in turns)

    class Calls:  # writes the gold call after the start it is handed
        protocol, can_prefill = "speakrl", True

        def respond(self, convs, prefix=""):
            from speakrl.training.protocols import render_call

            return [ev.Turn(text="\n" + render_call(c.gold["gold_name"], json.loads(c.gold["gold_args"]))) for c in convs]

    metrics = ev.forced_call_metrics(Calls(), rows)
    assert metrics["forced_call_exact_match"] == 1.0 and metrics["forced_call_right_tool"] == 1.0


def test_pretraining_reads_whole_dialogues_with_no_protocol_turns(splits, tiny_dir):
    """The pretrain stage's texts are the training dialogues as prompts render history: every user turn and every
    gold call's arguments are in them, and none of SFT's protocol (`<clarify>`, the decision token) is."""
    from transformers import AutoTokenizer

    from speakrl.training.train import pretrain_texts

    cfg, _ = load_recipe("tiny-cpu", output_dir="unused")
    dialogues = splits["train"][:20]
    texts = pretrain_texts(dialogues, AutoTokenizer.from_pretrained(tiny_dir), cfg)
    assert len(texts) == len(dialogues)
    for text, d in zip(texts, dialogues):
        assert "<clarify>" not in text.split("<|im_end|>", 1)[1]  # only the system line names the protocol
        for m in d.messages:
            if m.role == "user":
                assert m.content in text
            for call in m.tool_calls or []:
                for value in json.loads(call.function.arguments).values():
                    assert json.dumps(value, ensure_ascii=False) in text


def test_the_fused_head_projects_only_labelled_positions_on_cpu_with_trls_results(tiny_dir, monkeypatch):
    """TRL's fused LM head projects every position on CPU; speakrl makes it project only those with a label (a
    prompt's and the padding's are not), with the same log-probabilities, entropies, loss and gradients."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer import utils

    from speakrl.training.train import score_labelled_positions_only

    # TRL's own check (training earlier in the session has wrapped it), and the wrapper back after this test
    monkeypatch.setattr(utils, "_use_triton", getattr(utils._use_triton, "trl_check", utils._use_triton))
    projected = []
    apply = utils._ChunkedLogProbFunction.apply

    def counting_apply(hidden, *args):
        projected.append(hidden.shape[0])
        return apply(hidden, *args)

    monkeypatch.setattr(utils._ChunkedLogProbFunction, "apply", counting_apply)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    utils.add_fused_lm_head(model, outputs=("log_probs", "entropy"))
    ids = torch.randint(3, model.config.vocab_size, (4, 40), generator=torch.Generator().manual_seed(0))
    attention = torch.ones_like(ids)
    attention[0, :12] = 0  # a left-padded prompt
    labels = ids.masked_fill(attention == 0, -100)
    labels[:, :30] = -100  # the completion: the last 10 tokens of each row

    def forward_backward():
        model.zero_grad()
        out = model(input_ids=ids, attention_mask=attention, labels=labels, fused_lm_head=True)
        out.loss.backward()
        return out, [p.grad.clone() for p in model.parameters()]

    full, full_grads = forward_backward()
    score_labelled_positions_only()
    score_labelled_positions_only()  # idempotent: wraps TRL's check once
    compact, compact_grads = forward_backward()
    assert projected == [4 * 39, 4 * 10]  # every next-token position, then the 40 labelled ones
    for name in ("log_probs", "entropy", "loss"):
        torch.testing.assert_close(getattr(compact, name), getattr(full, name))
    for a, b in zip(compact_grads, full_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_grpo_groups_a_steps_prompts_by_length_when_the_recipe_asks(splits, tiny_dir, tmp_path):
    """TRL's GRPO sampler ignores `train_sampling_strategy`; speakrl orders the prompts so that each step's are of
    similar length (less padding), keeps every row once, and leaves TRL's shuffle off only then."""
    from speakrl.training.data import decision_rows
    from speakrl.training.train import build_grpo_trainer

    rows = decision_rows(splits["train"])[:96]
    settings = ["report_to=none", "per_device_train_batch_size=8", "num_generations=2", "max_completion_length=16"]
    plain, _ = load_recipe("tiny-cpu", output_dir=str(tmp_path / "a"), overrides=[*settings, "train_sampling_strategy=random"])
    grouped, _ = load_recipe("tiny-cpu", output_dir=str(tmp_path / "b"), overrides=settings)
    assert grouped.train_sampling_strategy == "group_by_length"  # the recipe's setting
    as_given = build_grpo_trainer(plain, str(tiny_dir), rows)
    ordered = build_grpo_trainer(grouped, str(tiny_dir), rows)
    assert as_given.args.shuffle_dataset and not ordered.args.shuffle_dataset
    assert sorted(ordered.train_dataset["id"]) == sorted(as_given.train_dataset["id"]) == sorted(r["id"] for r in rows)
    tokens = lambda dataset: [len(ordered.processing_class(p)["input_ids"]) for p in dataset["prompt"]]  # noqa: E731
    per_step = 4  # prompts a step: 8 completions, 2 of each

    def padded(lengths):  # every prompt of a step is padded to its longest
        return sum(per_step * max(lengths[i: i + per_step]) for i in range(0, len(lengths) - per_step + 1, per_step))

    assert padded(tokens(ordered.train_dataset)) < 0.95 * padded(tokens(as_given.train_dataset))
