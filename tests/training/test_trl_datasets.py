"""Each published config goes to TRL as it is loaded: the card's "Use with TRL" snippet runs on the tiny model.

SFT on `default` (conversational, per-row tools), prompt-completion SFT on `decision_points`, and a GRPO step whose
prompts carry each row's own tool specs (rendered by the card's two `render` lines: TRL's GRPOTrainer reads no
`tools` column).
"""

from __future__ import annotations

import json
import math

import datasets
import pytest

from speakrl.pipeline.stages.publish import PublishOptions, build_dataset_dir
from speakrl_testing.cards import card_snippet, run_card_snippet


@pytest.fixture(scope="module")
def published(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("published") / "ds"
    return build_dataset_dir(run_dir, out, PublishOptions(repo_id=str(out)))


@pytest.mark.slow
def test_the_cards_trl_snippet_trains_on_every_config_as_loaded(published, tiny_dir, tmp_path, monkeypatch):
    trainers, namespace = run_card_snippet(card_snippet(published, tiny_dir), monkeypatch, tmp_path)

    sft_dialogues, sft_points, grpo = trainers
    tokenizer = namespace["tokenizer"]
    for trainer in (sft_dialogues, sft_points):
        loss = [h["loss"] for h in trainer.state.log_history if "loss" in h] or [trainer.state.log_history[-1]["train_loss"]]
        assert all(math.isfinite(float(x)) for x in loss)

    # default: the row's tools reached the rendered text, and the per-turn acts did not become token labels.
    raw = datasets.load_dataset(str(published), split="train")
    first = tokenizer.decode(sft_dialogues.train_dataset[0]["input_ids"])
    assert all(t["function"]["description"] in first for t in json.loads(raw[0]["tools"]))
    assert all(isinstance(x, int) for x in sft_dialogues.train_dataset[0]["labels"])

    # Every row reaches TRL whole (the card's max_length=None): TRL's default 1,024 would cut the tiny tokenizer's
    # longer rows and drop the decision points whose prompt alone fills it.
    points = datasets.load_dataset(str(published), "decision_points", split="train")
    assert len(sft_dialogues.train_dataset) == len(raw) and len(sft_points.train_dataset) == len(points)
    assert max(len(e["input_ids"]) for e in sft_points.train_dataset) > 1024
    last = sft_dialogues.train_dataset[len(raw) - 1]
    final = raw[len(raw) - 1]["messages"][-1]["content"]
    assert tokenizer.decode(last["input_ids"]).rstrip().endswith(final + "<|im_end|>")

    # decision_points: prompt-completion, the loss covers the gold turn only (no prompt, no system text).
    for example, point in zip(sft_points.train_dataset.select(range(20)), points):
        assert "completion_mask" in example or -100 in example.get("labels", [])
        mask = example.get("completion_mask") or [int(x != -100) for x in example["labels"]]
        learned = tokenizer.decode([t for t, m in zip(example["input_ids"], mask) if m])
        gold = point["gold_call"]["name"] if point["act"] == "tool_call" else point["gold_content"]
        assert learned.startswith("<think>") and point["prompt"][0]["content"] not in learned
        assert gold in learned, (gold, learned)

    # GRPO: every prompt carries its own row's tools, and a step ran with the reward.
    prompts = namespace["prompts"]
    assert isinstance(prompts[0]["prompt"], str)
    for row in prompts.select(range(min(50, len(prompts)))):
        assert all(f'"name": "{t["function"]["name"]}"' in row["prompt"] for t in json.loads(row["tools"]))
    assert any("rewards/asks_when_needed/mean" in h for h in grpo.state.log_history)


@pytest.mark.slow
def test_assistant_only_loss_keeps_the_reasoning_of_clarify_turns(published, tiny_dir, tmp_path):
    """The card's advice: with assistant_only_loss TRL swaps in its training template, which keeps every turn's
    reasoning (the stock Qwen3 template drops it before the last user message)."""
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    dialogues = datasets.load_dataset(str(published), split="train")
    asked = next(i for i, row in enumerate(dialogues) if any(lab["act"] == "clarify" for lab in row["turn_labels"]))
    dialogues = dialogues.select([asked])
    row = dialogues[0]
    reasoning = next(row["messages"][lab["message_index"]]["reasoning_content"] for lab in row["turn_labels"]
                     if lab["act"] == "clarify")
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_dir))
    stock = tokenizer.apply_chat_template(row["messages"], tools=json.loads(row["tools"]), tokenize=False)
    assert reasoning not in stock
    args = SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=1, report_to="none", save_strategy="no", use_cpu=True,
                     assistant_only_loss=True)
    trainer = SFTTrainer(model=str(tiny_dir), args=args, train_dataset=dialogues, processing_class=tokenizer)
    example = trainer.train_dataset[0]
    learned = tokenizer.decode([t for t, lab in zip(example["input_ids"], example["labels"]) if lab != -100])
    assert reasoning in learned
