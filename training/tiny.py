"""A tiny Qwen3-architecture model and a byte-level BPE tokenizer trained offline on the dataset's text.

For tests and the CPU demo: nothing is downloaded. The tokenizer carries TRL's bundled `qwen3.jinja` chat template
verbatim, so TRL recognizes it (`add_response_schema`, `get_training_chat_template`) and its tool-call parsing works.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from speakrl.pipeline.errors import TrainingError

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Structural tags of the chat template and the speakrl protocol: single tokens, decoded as text (Qwen3 does the same).
TAG_TOKENS = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<clarify>", "</clarify>"]


def qwen3_chat_template() -> str:
    """TRL's bundled original Qwen3 chat template."""
    from trl.chat_template_utils import qwen3_chat_template as template

    return template


def training_texts(rows: Iterable[dict[str, Any]], protocol: str, limit: int = 3000, style: str = "chat_template") -> list[str]:
    """The texts a tiny model will read: decision prompts rendered through the Qwen3 template, and gold turns."""
    import json

    from transformers.utils.chat_template_utils import render_jinja_template

    from speakrl.training.prompts import compact_messages, with_instructions
    from speakrl.training.protocols import render_speakrl

    texts = []
    for i, row in enumerate(rows):
        if i >= limit:
            break
        history, tools = json.loads(row["history"]), json.loads(row["tools"])
        if style == "compact":
            history, tools = compact_messages(history, tools, protocol), None
        else:
            history = with_instructions(history, protocol)
        rendered, _ = render_jinja_template(
            conversations=[history], tools=tools, chat_template=qwen3_chat_template(), add_generation_prompt=True,
        )
        call = (row["gold_name"], row["gold_args"]) if row["gold_name"] else None
        texts += [rendered[0], render_speakrl(row["act"], row["gold_reasoning"], row["gold_content"], call)]
    return texts


def episode_texts(rows: Iterable[dict[str, Any]], tools: dict[str, list[Any]], limit: int = 3000) -> list[str]:
    """The texts a tiny model reads in episode mode: decision rows as whole episode turns (`prompts.episode_example`:
    the environment's tools as the template's JSON block, native calls, `ask_user`), rendered through the Qwen3 template.
    `tools`: each domain's environment methods."""
    from itertools import islice

    from transformers.utils.chat_template_utils import render_jinja_template

    from speakrl.training.prompts import episode_example

    texts = []
    for row in islice(rows, limit):
        history, message = episode_example(row)
        rendered, _ = render_jinja_template(conversations=[history + [message]], tools=tools[row["domain"]],
                                            chat_template=qwen3_chat_template())
        texts.append(rendered[0])
    return texts


# Pre-splits for the BPE. `words`: a word (letters, digits, `_`) is a piece of its own, without the space before it, so
# a value or a tool name is spelled with the same tokens in the user's text, in a tool signature and inside a call's
# JSON (`"Static Hearts"` after a quote, ` Static Hearts` after a space): the model can copy it. `none`: merges may
# cross word boundaries, which halves prompt length but spells a value differently in the prompt and in a call
# (`Chrysler Pacific` + `a ` vs `Chrysler Pacifica`), so it can only be memorized (training/README.md).
SPLITS = {"words": r"\w+|[^\w\n]+", "none": None}


def build_tokenizer(texts: Iterable[str], vocab_size: int = 4096, max_token_length: int = 24, split: str = "words") -> Any:
    """Train a byte-level BPE on `texts` and wrap it as a transformers fast tokenizer with the Qwen3 chat template."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    if split not in SPLITS:
        raise TrainingError(f"unknown tokenizer split {split!r}; valid: {', '.join(SPLITS)}")
    tok = Tokenizer(models.BPE())
    # Newlines and tags are always their own pieces; no GPT-2 regex (it glues the space to the next word).
    pieces = [pre_tokenizers.Split(pattern=Regex(r"\n+|</?[a-z_]+>|<\|[a-z_]+\|>"), behavior="isolated")]
    if SPLITS[split]:
        pieces.append(pre_tokenizers.Split(pattern=Regex(SPLITS[split]), behavior="isolated"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([*pieces, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        max_token_length=max_token_length,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[],
        model_max_length=4096,
        padding_side="left",
    )
    fast.add_tokens(TAG_TOKENS)  # not special: they must survive decode(skip_special_tokens=True)
    fast.chat_template = qwen3_chat_template()
    return fast


def build_model(tokenizer: Any, hidden_size: int = 128, num_layers: int = 2, num_heads: int = 4,
                intermediate_size: int = 384, max_position_embeddings: int = 4096, seed: int = 0) -> Any:
    """A randomly initialized Qwen3ForCausalLM sized for CPU."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=max(1, num_heads // 2),
        head_dim=hidden_size // num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen3ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def build_tiny(out_dir: Path, texts: Iterable[str], vocab_size: int = 4096, max_token_length: int = 24, split: str = "words",
               **model_kwargs: Any) -> Path:
    """Build tokenizer + model and save both to `out_dir` (a normal HF checkpoint dir)."""
    out_dir = Path(out_dir)
    tokenizer = build_tokenizer(texts, vocab_size=vocab_size, max_token_length=max_token_length, split=split)
    model = build_model(tokenizer, **model_kwargs)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out_dir)
    model.save_pretrained(out_dir)
    n = sum(p.numel() for p in model.parameters())
    logger.info("built tiny Qwen3 (%d parameters, vocab %d) in %s", n, len(tokenizer), out_dir)
    return out_dir
