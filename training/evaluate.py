"""Evaluation: one harness for a local checkpoint and any OpenAI-compatible endpoint.

Two views of the test split:
- decision points (teacher-forced: the gold history, one predicted turn): clarification precision / recall / F1 with
  over- and under-asking rates (controls included), tool-call exact match and argument F1, answer accuracy, format;
- episodes (the SpeakRL task-completion setting): the policy starts from the opening request, its questions are
  answered by the user simulator from the hidden goal and its tool calls run in the catalog simulator; task
  completion (a call matches the goal) and the number of assistant turns.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from speakrl.pipeline.checks import argument_f1, call_matches, normalize, question_targets
from speakrl.pipeline.errors import TrainingError
from speakrl.training.protocols import parse, render_speakrl
from speakrl.training.rewards import answer_reward, slot_specs

logger = logging.getLogger(__name__)


@dataclass
class Turn:
    """A policy's raw output for one turn: text (possibly with inline tool calls) and/or structured tool calls."""

    text: str = ""
    tool_calls: list[dict[str, Any]] | None = None
    # P(ask) at the decision token (`protocols.decision_tokens`), normalized over ask/act, read after the prefix the
    # policy itself generated greedily (its own <think>, not gold reasoning); None when unknown.
    p_ask: float | None = None


@dataclass
class Conversation:
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)
    gold: dict[str, Any] | None = None  # the decision or episode row: read only by the baseline policies


class Policy(Protocol):
    protocol: str

    def respond(self, conversations: Sequence[Conversation]) -> list[Turn]: ...


# The start of an acting turn in the `speakrl` protocol, up to the decision's closing tag (what follows is the
# policy's, newline included, so no tokenizer sees a cut it never trained on): a policy that can be handed it
# (`respond(..., prefix=)`) is scored on its calls apart from its decision (`forced_call_metrics`).
ACT_PREFIX = render_speakrl("tool_call", "", None, None).rstrip()


class LocalPolicy:
    """A transformers checkpoint, greedy decoding, batched, prompts rendered exactly as in training."""

    def __init__(self, model_dir: str, protocol: str = "speakrl", max_new_tokens: int = 128, batch_size: int = 16,
                 prompt_style: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise TrainingError(f"model path {model_dir!r} does not exist or is not a checkpoint directory (no config.json)")
        self.protocol, self.max_new_tokens, self.batch_size = protocol, max_new_tokens, batch_size
        self.can_prefill = protocol == "speakrl"  # a turn can be started for it (ACT_PREFIX)
        settings = path / "speakrl.json"  # written by training: the prompt style the checkpoint was trained with
        trained = json.loads(settings.read_text(encoding="utf-8")) if settings.is_file() else {}
        self.prompt_style = prompt_style or trained.get("prompt_style", "chat_template")
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        self.model.eval()
        self._torch = torch
        self._decision = None
        if protocol == "speakrl":
            from speakrl.training.protocols import decision_tokens

            prefix, ask, act = decision_tokens(self.tokenizer)
            # The shortest tail of the prefix that spells `<clarify>`: where in a generated turn the decision comes.
            k = next(k for k in range(1, len(prefix) + 1) if "<clarify>" in self.tokenizer.decode(prefix[-k:]))
            self._decision = (prefix[-k:], ask, act)

    def respond(self, conversations: Sequence[Conversation], prefix: str = "") -> list[Turn]:
        """Each conversation's next turn; with `prefix`, the turn starts with it and the text is what follows."""
        from speakrl.training.prompts import render_prompt

        out: list[Turn] = []
        limit = getattr(self.model.config, "max_position_embeddings", 4096) - self.max_new_tokens
        for start in range(0, len(conversations), self.batch_size):
            batch = conversations[start : start + self.batch_size]
            texts = [render_prompt(self.tokenizer, c.messages, c.tools, self.protocol, self.prompt_style) + prefix
                     for c in batch]
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            if enc["input_ids"].shape[1] > limit:  # keep the most recent context (left-truncate)
                enc = {k: v[:, -limit:] for k, v in enc.items()}
            with self._torch.no_grad():
                gen = self.model.generate(
                    **enc,
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=self.tokenizer.eos_token_id,
                    output_logits=self._decision is not None,
                    return_dict_in_generate=True,
                )
            new = gen.sequences[:, enc["input_ids"].shape[1] :]
            texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            for b, text in enumerate(texts):
                out.append(Turn(text=text, p_ask=self._p_ask(new[b].tolist(), gen.logits, b) if self._decision else None))
        return out

    def _p_ask(self, ids: list[int], logits: Any, b: int) -> float | None:
        """P(ask) / (P(ask) + P(act)) at the token after the first `<clarify>` of a generated turn."""
        tail, ask, act = self._decision
        for j in range(len(tail), len(ids)):
            if ids[j - len(tail) : j] == tail:
                probs = self._torch.softmax(logits[j][b].float(), dim=-1)
                p_ask, p_act = float(probs[ask]), float(probs[act])
                return p_ask / (p_ask + p_act) if p_ask + p_act > 0 else None
        return None


class ApiPolicy:
    """An OpenAI-compatible chat completions endpoint (OpenAI, vLLM, SGLang, Ollama...), through the openai SDK."""

    def __init__(self, base_url: str, model: str, protocol: str = "native", api_key_env: str = "OPENAI_API_KEY",
                 max_new_tokens: int = 512, concurrency: int = 8, timeout: float = 120.0):
        import openai

        self.protocol, self.model, self.max_new_tokens, self.concurrency = protocol, model, max_new_tokens, concurrency
        # Local servers need no key; the SDK still wants a string.
        self.client = openai.OpenAI(base_url=base_url, api_key=os.environ.get(api_key_env) or "none", timeout=timeout, max_retries=3)
        self._openai = openai

    def _one(self, conversation: Conversation) -> Turn:
        from speakrl.training.prompts import with_instructions

        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": _api_messages(with_instructions(conversation.messages, self.protocol)),
            "max_tokens": self.max_new_tokens,
            "temperature": 0.0,
        }
        if conversation.tools:
            kwargs["tools"] = conversation.tools
        try:
            response = self.client.chat.completions.create(**kwargs)
        except self._openai.APIError as e:
            raise TrainingError(f"the endpoint refused an evaluation request: {str(e).splitlines()[0]}") from None
        message = response.choices[0].message
        text = message.content or ""
        reasoning = getattr(message, "reasoning_content", None)
        if reasoning and "<think>" not in text:
            text = f"<think>{reasoning}</think>{text}"
        calls = [{"function": {"name": c.function.name, "arguments": c.function.arguments}} for c in message.tool_calls or []]
        return Turn(text=text, tool_calls=calls or None)

    def respond(self, conversations: Sequence[Conversation]) -> list[Turn]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._one, conversations))


def _api_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages in OpenAI wire format (tool-call arguments as JSON strings, ids on tool results)."""
    out = []
    for m in messages:
        m = dict(m)
        if m.get("tool_calls"):
            m["tool_calls"] = [
                {"id": c.get("id") or f"call_{i}", "type": "function",
                 "function": {"name": c["function"]["name"], "arguments": c["function"]["arguments"] if isinstance(c["function"]["arguments"], str) else json.dumps(c["function"]["arguments"])}}
                for i, c in enumerate(m["tool_calls"])
            ]
        if m.get("role") == "tool" and not m.get("tool_call_id"):
            m["tool_call_id"] = "call_0"
        out.append(m)
    return out


BASELINES = ("always-act", "always-ask", "oracle")


class BaselinePolicy:
    """A trivial policy that reads the gold row of each conversation, in the `speakrl` protocol:
    `oracle` takes every gold turn; `always-ask` asks every turn (the gold question where one is due, else about the
    first slot of the tools); `always-act` never asks: the gold action where one is due, and where a question is due
    it acts anyway, on what the user said so far (in episodes: the gold calls with ungrounded values left out, so one
    side of a conflict the user stated is kept: an optimistic floor for acting without asking)."""

    protocol = "speakrl"

    def __init__(self, kind: str):
        if kind not in BASELINES:
            raise TrainingError(f"unknown baseline {kind!r}; valid: {', '.join(BASELINES)}")
        self.kind = kind
        self.can_prefill = kind == "oracle"  # the ceiling of the calls' metrics; the others' turns ignore a prefix

    def respond(self, conversations: Sequence[Conversation], prefix: str = "") -> list[Turn]:
        turns = [self._one(c) for c in conversations]
        return [Turn(text=t.text.removeprefix(prefix), p_ask=t.p_ask) for t in turns] if prefix else turns

    def _one(self, conv: Conversation) -> Turn:
        from speakrl.pipeline.checks import ungrounded_args
        from speakrl.training.protocols import render_speakrl

        row = conv.gold or {}
        if "benchmark" in row:
            from speakrl.training.benchmarks import baseline_turn

            act, content, call = baseline_turn(self.kind, row)
            return Turn(text=render_speakrl(act, "", content, call), p_ask=1.0 if act == "clarify" else 0.0)
        if "gold_turns_json" in row:  # an episode: the gold turns in order, one per assistant turn taken so far
            gold = json.loads(row["gold_turns_json"])
            k = sum(m.get("role") == "assistant" for m in conv.messages)
            if self.kind == "always-act":
                gold = [g for g in gold if g["act"] != "clarify"]
            turn = gold[k] if k < len(gold) else {"act": "answer", "content": "Done.", "call": None}
        else:
            turn = {"act": row.get("act", "answer"), "content": row.get("gold_content"),
                    "call": [row["gold_name"], row["gold_args"]] if row.get("gold_name") else None}
        if self.kind == "always-ask" and turn["act"] != "clarify":
            slot = next(iter((conv.tools[0]["function"].get("parameters") or {}).get("properties", {})), "details") if conv.tools else "details"
            turn = {"act": "clarify", "content": f"Which {slot.replace('_', ' ')} do you mean?", "call": None}
        if self.kind == "always-act" and turn["act"] == "clarify":
            turn = {"act": "answer", "content": "I'll go ahead with what you gave me.", "call": None}
        if self.kind == "always-act" and turn["call"] and "gold_turns_json" in row:
            args = json.loads(turn["call"][1])
            said = [m.get("content") or "" for m in conv.messages if m.get("role") == "user"]
            drop = set(ungrounded_args(args, said, json.loads(row.get("defaults") or "{}")))
            turn["call"] = [turn["call"][0], json.dumps({k: v for k, v in args.items() if k not in drop})]
        call = tuple(turn["call"]) if turn["call"] else None
        text = render_speakrl(turn["act"], "", turn["content"], call)
        return Turn(text=text, p_ask=1.0 if turn["act"] == "clarify" else 0.0)


def auc(scores: Sequence[float], positives: Sequence[bool]) -> float | None:
    """ROC AUC of `scores` separating positives from negatives (ties count half); None without both classes.

    >>> auc([0.9, 0.8, 0.3, 0.1], [True, False, True, False])
    0.75
    >>> auc([0.5, 0.5], [True, False])
    0.5
    """
    pos = [s for s, p in zip(scores, positives) if p]
    neg = [s for s, p in zip(scores, positives) if not p]
    if not pos or not neg:
        return None
    import bisect

    ordered = sorted(neg)
    wins = sum(bisect.bisect_left(ordered, s) + 0.5 * (bisect.bisect_right(ordered, s) - bisect.bisect_left(ordered, s)) for s in pos)
    return round(wins / (len(pos) * len(neg)), 4)


def f1_interval(dialogues: Sequence[Sequence[tuple[bool, bool]]], baseline: Sequence[Sequence[tuple[bool, bool]]] | None = None,
                resamples: int = 1000, seed: int = 0) -> list[float] | None:
    """95% bootstrap interval of clarify F1: each dialogue is its turns' (needed, asked) pairs, and whole dialogues are
    resampled (turns of one dialogue are not independent). With `baseline`, the same dialogues' pairs under another
    policy, the interval of the difference F1 - F1(baseline), resampled together (a paired comparison). None without
    any turn that needs a question.

    >>> f1_interval([[(True, True), (False, False)]] * 5)
    [1.0, 1.0]
    >>> lo, hi = f1_interval([[(True, True)], [(True, False)], [(False, True)], [(False, False)]] * 10)
    >>> lo < 0.5 < hi
    True
    >>> f1_interval([[(True, True)]] * 4, baseline=[[(True, False)]] * 4)
    [1.0, 1.0]
    >>> f1_interval([[(False, False)]]) is None
    True
    """
    import random

    if not any(needed for turns in dialogues for needed, _ in turns):
        return None

    def f1(c: list[tuple[int, int, int]], picks: list[int]) -> float:
        return f1_score(*(sum(c[i][j] for i in picks) for j in range(3)))

    ours = [clarify_counts(t) for t in dialogues]
    theirs = [clarify_counts(t) for t in baseline] if baseline is not None else None
    rng, scores = random.Random(seed), []
    for _ in range(resamples):
        picks = rng.choices(range(len(ours)), k=len(ours))
        scores.append(f1(ours, picks) - (f1(theirs, picks) if theirs else 0.0))
    scores.sort()
    return [round(scores[int(0.025 * resamples)], 4), round(scores[int(0.975 * resamples) - 1], 4)]


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def clarify_counts(turns: Sequence[tuple[bool, bool]]) -> tuple[int, int, int]:
    """True positives, false positives and false negatives of asking, over (needed, asked) turns.

    >>> clarify_counts([(True, True), (False, True), (True, False), (False, False)])
    (1, 1, 1)
    """
    return sum(n and a for n, a in turns), sum(a and not n for n, a in turns), sum(n and not a for n, a in turns)


def f1_score(tp: int, fp: int, fn: int) -> float:
    """F1 from counts of true positives, false positives and false negatives; 0 when none was right.

    >>> round(f1_score(3, 1, 2), 4), f1_score(0, 4, 0), f1_score(0, 0, 0)
    (0.6667, 0.0, 0.0)
    """
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def decision_metrics(policy: Policy, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Teacher-forced per-turn metrics over decision rows (`training.data.decision_rows`)."""
    convs = [Conversation(json.loads(r["history"]), json.loads(r["tools"]), gold=r) for r in rows]
    turns = policy.respond(convs)
    scores: list[float] = []
    tp = fp = fn = tn = fp_ctrl = neg_ctrl = 0
    target_overlap: list[float] = []
    exact: list[float] = []
    arg_f1: list[float] = []
    answers: list[float] = []
    formats: list[float] = []
    by_dialogue: dict[str, list[tuple[bool, bool]]] = {}
    for row, turn in zip(rows, turns, strict=True):
        p = parse(turn.text, policy.protocol, turn.tool_calls)
        formats.append(p.format_score)
        asked, needed = p.act == "clarify", row["act"] == "clarify"
        by_dialogue.setdefault(row["dialogue_id"], []).append((needed, asked))
        # Without the decision token's probability (API models, a turn with no `<clarify>`), the hard decision.
        scores.append(turn.p_ask if turn.p_ask is not None else float(asked))
        if needed:
            tp, fn = tp + asked, fn + (not asked)
            if asked:
                gold, got = set(row["target_slots"]), question_targets(p.question or "", slot_specs(row["slots"]))
                target_overlap.append(len(gold & got) / len(gold | got) if gold | got else 0.0)
        else:
            fp, tn = fp + asked, tn + (not asked)
            if row["is_control"]:
                neg_ctrl += 1
                fp_ctrl += asked
        if row["act"] == "tool_call":
            gold_args, defaults = json.loads(row["gold_args"]), json.loads(row["defaults"])
            ok = p.act == "tool_call" and p.call_args is not None
            exact.append(float(ok and call_matches(p.call_name or "", p.call_args or {}, row["gold_name"], gold_args, defaults)))
            arg_f1.append(argument_f1(p.call_args or {}, gold_args, defaults) if ok and p.call_name == row["gold_name"] else 0.0)
        if row["act"] == "answer":
            answers.append(answer_reward([turn.text], act=["answer"], gold_content=[row["gold_content"]],
                                         last_tool_result=[row["last_tool_result"]], protocol=[policy.protocol])[0] or 0.0)
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = round(f1_score(tp, fp, fn), 4)
    mean = lambda xs: round(sum(xs) / len(xs), 4) if xs else None
    return {
        "decision_points": len(rows),
        "format_score": mean(formats),
        "clarify_precision": precision,
        "clarify_recall": recall,
        "clarify_f1": f1,
        "clarify_f1_ci95": f1_interval(list(by_dialogue.values())),
        # Each dialogue's (needed, asked) per turn, for paired comparisons of two policies (`f1_interval`).
        "decisions": by_dialogue,
        "p_ask_auc": auc(scores, [r["act"] == "clarify" for r in rows]),
        "over_asking_rate": _ratio(fp, fp + tn),
        "under_asking_rate": _ratio(fn, tp + fn),
        "control_over_asking_rate": _ratio(fp_ctrl, neg_ctrl),
        "question_target_overlap": mean(target_overlap),
        "tool_call_exact_match": mean(exact),
        "argument_f1": mean(arg_f1),
        "answer_accuracy": mean(answers),
    }


def forced_call_metrics(policy: Policy, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The policy's calls apart from its decision: on the decision rows where a call is due, the turn is started as
    an acting turn (`ACT_PREFIX`) and the policy writes the call. The right tool, argument F1, exact match, and the
    share of the call's values that the conversation so far contains (a value from memory is not in it). Empty for a
    policy that cannot be handed the start of a turn (`can_prefill`)."""
    rows = [r for r in rows if r["act"] == "tool_call"]
    if not rows or not getattr(policy, "can_prefill", False):
        return {}
    convs = [Conversation(json.loads(r["history"]), json.loads(r["tools"]), gold=r) for r in rows]
    right = exact = 0
    f1s: list[float] = []
    values = copied = 0
    for row, conv, turn in zip(rows, convs, policy.respond(convs, prefix=ACT_PREFIX), strict=True):  # type: ignore[call-arg]
        p = parse(ACT_PREFIX + turn.text, policy.protocol)
        name, args = p.call_name or "", p.call_args or {}
        gold_args, defaults = json.loads(row["gold_args"]), json.loads(row["defaults"])
        right += name == row["gold_name"]
        f1s.append(argument_f1(args, gold_args, defaults) if name == row["gold_name"] else 0.0)
        exact += call_matches(name, args, row["gold_name"], gold_args, defaults)
        said = normalize(" ".join(str(m.get("content") or "") for m in conv.messages))
        values += len(args)
        copied += sum(normalize(v) in said for v in args.values())
    n = len(rows)
    return {
        "forced_call_right_tool": round(right / n, 4),
        "forced_call_argument_f1": round(sum(f1s) / n, 4),
        "forced_call_exact_match": round(exact / n, 4),
        "forced_call_values_in_context": _ratio(copied, values),
    }


def episode_metrics(policy: Policy, rows: list[dict[str, Any]], envs: dict[str, type], max_turns: int = 8) -> dict[str, Any]:
    """Roll out episodes (`training.data.episode_rows`) with the user simulator and the tool simulator."""
    states = []
    for row in rows:
        env = envs[row["environment"]]()
        env.reset(**row)
        states.append({"row": row, "env": env, "conv": Conversation(json.loads(row["history"]), json.loads(row["tools"]), gold=row), "turns": 0, "done": False})
    for _ in range(max_turns):
        active = [s for s in states if not s["done"]]
        if not active:
            break
        for s, turn in zip(active, policy.respond([s["conv"] for s in active]), strict=True):
            s["turns"] += 1
            p = parse(turn.text, policy.protocol, turn.tool_calls)
            msgs = s["conv"].messages
            if p.act == "clarify":
                msgs.append({"role": "assistant", "content": p.question})
                msgs.append({"role": "user", "content": s["env"].ask_user(p.question)})
            elif p.act == "tool_call":
                args = p.call_args if p.call_args is not None else {}
                result = s["env"]._call(p.call_name, args) if p.call_args is not None else {"error": "arguments are not a JSON object"}
                call = {"id": f"call_{s['turns']}", "type": "function", "function": {"name": p.call_name, "arguments": json.dumps(args)}}
                msgs.append({"role": "assistant", "content": "", "tool_calls": [call]})
                msgs.append({"role": "tool", "name": p.call_name, "tool_call_id": call["id"], "content": json.dumps(result)})
            else:  # an answer ends the episode; so does output the protocol cannot read
                s["done"] = True
    n = len(states)
    completed = [s["env"].completed for s in states]
    ctrl = [s for s in states if not s["row"]["needs_clarification"]]
    return {
        "episodes": n,
        "task_completion": _ratio(sum(completed), n),
        "task_completion_ambiguous": _ratio(sum(s["env"].completed for s in states if s["row"]["needs_clarification"]), n - len(ctrl)),
        "task_completion_control": _ratio(sum(s["env"].completed for s in ctrl), len(ctrl)),
        "avg_turns": _ratio(sum(s["turns"] for s in states), n),
        "avg_gold_turns": _ratio(sum(s["row"]["gold_turns"] for s in states), n),
        "avg_questions": _ratio(sum(len(s["env"].questions) for s in states), n),
    }


def evaluate(policy: Policy, dataset: str, split: str = "test", catalog: str | None = None, max_turns: int = 8,
             limit: int | None = None, config: str | None = None) -> dict[str, Any]:
    """Decision-point and episode metrics of `policy` on a split of a SpeakER dataset."""
    from speakrl.pipeline.catalog import load_catalog
    from speakrl.training.data import decision_rows, episode_rows, load_dialogues
    from speakrl.training.env import environment_factories

    splits = load_dialogues(dataset, split, config)
    dialogues = splits.get(split)
    if not dialogues:
        raise TrainingError(f"dataset {dataset!r} has no dialogues in split {split!r}")
    dialogues = dialogues[:limit] if limit else dialogues
    catalog_source = catalog or _run_catalog(dataset) or "builtin"
    envs = environment_factories(load_catalog(catalog_source), sorted({d.domain for d in dialogues}))
    metrics = {"split": split, "dialogues": len(dialogues), "protocol": policy.protocol}
    points = decision_rows(dialogues)
    metrics.update(decision_metrics(policy, points))
    metrics.update(forced_call_metrics(policy, points))
    metrics.update(episode_metrics(policy, episode_rows(dialogues), envs, max_turns))
    return metrics


def _run_catalog(dataset: str) -> str | None:
    """The catalog a run dir was generated from (its config.yaml), if the dataset is a run dir."""
    cfg = Path(dataset) / "config.yaml"
    if not cfg.is_file():
        return None
    import yaml

    return (yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}).get("catalog")


TABLE_ROWS = [
    ("task_completion", "task completion"),
    ("avg_turns", "avg turns (gold: {avg_gold_turns})"),
    ("clarify_f1", "clarify F1 (greedy)"),
    ("clarify_f1_ci95", "clarify F1 95% interval (dialogues resampled)"),
    ("p_ask_auc", "P(ask) AUC (at the decision token, after the greedy prefix)"),
    ("clarify_precision", "clarify precision"),
    ("clarify_recall", "clarify recall"),
    ("over_asking_rate", "over-asking rate"),
    ("under_asking_rate", "under-asking rate"),
    ("control_over_asking_rate", "over-asking on controls"),
    ("tool_call_exact_match", "tool-call exact match"),
    ("argument_f1", "argument F1"),
    ("forced_call_right_tool", "told to act: right tool"),
    ("forced_call_argument_f1", "told to act: argument F1"),
    ("forced_call_values_in_context", "told to act: values found in the conversation"),
    ("answer_accuracy", "answer accuracy"),
    ("format_score", "format"),
]


def metrics_table(results: dict[str, dict[str, Any]], title: str = "SpeakER evaluation",
                  rows: list[tuple[str, str]] | None = None) -> Any:
    """A rich table: one column per model, one row per metric (`TABLE_ROWS` unless `rows` is given)."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    for name in results:
        table.add_column(name, justify="right")
    first = next(iter(results.values()), {})
    for key, label in rows or TABLE_ROWS:
        cells = []
        for m in results.values():
            v = m.get(key)
            if isinstance(v, list):  # an interval
                v = "–".join(f"{x:.3f}" for x in v)
            cells.append("—" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v))
        table.add_row(label.format(**{k: first.get(k) for k in ("avg_gold_turns",)}), *cells)
    return table
