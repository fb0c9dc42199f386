"""The tiny model's tokenizer: a value or a tool name is spelled with the same tokens in the prompt and in a call."""

import json

import pytest

from speakrl.pipeline.errors import TrainingError
from speakrl.training.data import decision_rows
from speakrl.training.prompts import render_prompt, render_target
from speakrl.training.tiny import build_tokenizer, training_texts


def _contains(ids: list[int], part: list[int]) -> bool:
    return any(ids[i : i + len(part)] == part for i in range(len(ids) - len(part) + 1))


def _copyable_share(tokenizer, rows) -> float:
    """Of the gold tool names and string values that the prompt spells out, the share whose tokens in the gold call
    also occur, in order, in the prompt's tokens: what a model can copy rather than memorize."""
    hits = total = 0
    for r in rows:
        prompt = render_prompt(tokenizer, r["history"], r["tools"], "speakrl", "compact")
        target = render_target(tokenizer, r, "speakrl")
        p_ids, t_ids = (tokenizer.encode(x, add_special_tokens=False) for x in (prompt, target))
        values = [r["gold_name"]] + [v for v in json.loads(r["gold_args"]).values() if isinstance(v, str)]
        for value in values:
            if value not in prompt:
                continue
            total += 1
            # the call's tokens for the value: the shortest run of target tokens that decodes to it
            runs = [t_ids[i:j] for i in range(len(t_ids)) for j in range(i + 1, min(len(t_ids), i + 16) + 1)
                    if tokenizer.decode(t_ids[i:j]) == value]
            hits += bool(runs) and _contains(p_ids, min(runs, key=len))
    return hits / total


@pytest.fixture(scope="module")
def rows(splits):
    return [r for r in decision_rows(splits["train"]) if r["act"] == "tool_call"][:80]


def test_word_split_spells_values_alike_in_prompt_and_call(splits, rows):
    texts = training_texts(decision_rows(splits["train"]), "speakrl", limit=600, style="compact")
    words = build_tokenizer(texts, vocab_size=1024, split="words")
    merged = build_tokenizer(texts, vocab_size=1024, split="none")
    assert _copyable_share(words, rows) >= 0.95
    # Merges across word boundaries spell most of them differently (why the tiny model could not copy).
    assert _copyable_share(merged, rows) < 0.7


def test_unknown_split_is_an_error():
    with pytest.raises(TrainingError, match="unknown tokenizer split"):
        build_tokenizer(["a b"], vocab_size=300, split="gpt2")


def test_episode_texts_are_what_episode_prompts_render(splits, catalog):
    """In episode mode the BPE learns from episode turns: the environment's tools as the template's JSON block, and
    questions as ask_user calls (native tool calls, not the speakrl protocol)."""
    from speakrl.training.data import decision_rows
    from speakrl.training.env import environment_factories
    from speakrl.training.tiny import episode_texts
    from speakrl.training.train import environment_tools

    rows = decision_rows(splits["train"])[:40]
    envs = environment_factories(catalog, sorted({r["domain"] for r in rows}))
    texts = episode_texts(rows, {name: environment_tools(cls) for name, cls in envs.items()})
    assert len(texts) == len(rows)
    for row, text in zip(rows, texts):
        assert "<tools>" in text and '"name": "ask_user"' in text
        if row["act"] == "clarify":
            assert '<tool_call>\n{"name": "ask_user"' in text and "<clarify>" not in text


def test_an_episode_mode_base_learns_its_tokens_from_episode_turns(splits, tmp_path):
    """build_base in episode mode trains the BPE on episode turns: `ask_user` and the JSON call keys are single
    tokens, as they never are for a decision-mode base (whose texts are speakrl-protocol prompts)."""
    from transformers import AutoTokenizer

    from speakrl.training.config import load_recipe
    from speakrl.training.train import build_base

    pieces = {}
    for mode in ("episode", "decision"):
        overrides = ["tiny_model={vocab_size: 1024, hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64}"]
        if mode == "episode":
            overrides += ["mode=episode", "reward_funcs=[]", "reward_weights=null"]
        cfg, _ = load_recipe("tiny-cpu", output_dir=str(tmp_path / mode), overrides=overrides)
        tok = AutoTokenizer.from_pretrained(build_base(cfg, "tiny", splits["train"], tmp_path / mode))
        pieces[mode] = tok.tokenize('{"name": "ask_user", "arguments": {"question": "')
    assert "ask_user" in pieces["episode"] and len(pieces["episode"]) < len(pieces["decision"]), pieces
