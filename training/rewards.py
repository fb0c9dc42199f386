"""Rewards for decision points, in TRL's signature `(completions, **columns) -> list[float | None]`.

Each reward reads the dataset columns built by `training.data.decision_rows` (act, target_slots, gold_name,
gold_args, defaults, user_texts, slots, ...) and the `protocol` column, and returns None where it does not apply
(TRL then leaves it out of that sample's sum). Scores are dense (partial credit) on purpose: with a weak policy a
binary reward gives a whole group the same score and GRPO learns nothing (watch `frac_reward_zero_std`).

The checks come from `pipeline.checks`, which the dataset validators use too, so what is filtered out of the
dataset and what is rewarded here cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from speakrl.pipeline.checks import (
    argument_f1,
    leaf_values,
    call_matches,
    mentioned,
    normalize,
    question_targets,
    ungrounded_args,
)
from speakrl.pipeline.errors import ConfigError
from speakrl.schemas.catalog import SlotSpec
from speakrl.training.protocols import parse

RewardFunc = Callable[..., list[float | None]]


def _col(columns: dict[str, Any], name: str, i: int, default: Any = None) -> Any:
    values = columns.get(name)
    if values is None:
        return default
    value = values[i]
    return default if value is None else value


def json_value(value: Any, default: Any) -> Any:
    """A column value that may be JSON text, decoded; `default` when it is missing or not JSON."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return default
    return default if value is None else value


def slot_specs(value: Any) -> list[SlotSpec]:
    """Slot specs from a `slots` column value (JSON list of {name, description, enum}); bad entries are skipped."""
    out = []
    for s in json_value(value, []):
        try:
            out.append(s if isinstance(s, SlotSpec) else SlotSpec(name=s["name"], description=s.get("description") or s["name"], enum=s.get("enum")))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def _parsed(completions: Sequence[Any], columns: dict[str, Any]) -> list[Any]:
    return [parse(c, _col(columns, "protocol", i, "speakrl")) for i, c in enumerate(completions)]


def format_reward(completions: Sequence[Any], **columns: Any) -> list[float | None]:
    """Well-formed output for the protocol, with partial credit per part (think, clarify, action, valid call).

    >>> format_reward([
    ...     '<think>ok</think><clarify>Yes\\nWhich city?</clarify>',
    ...     '<think>ok</think><clarify>No</clarify><tool_call>{"name": "f", "arguments": {}}</tool_call>',
    ...     '<clarify>No</clarify>Done.',
    ...     'Which city?', '', None,
    ... ])
    [1.0, 1.0, 0.75, 0.0, 0.0, 0.0]
    >>> format_reward(['<tool_call>{"name": "f", "arguments": {}}</tool_call>', '<tool_call>{bad'], protocol=["native"] * 2)
    [1.0, 0.0]
    """
    return [p.format_score for p in _parsed(completions, columns)]


def clarify_reward(completions: Sequence[Any], **columns: Any) -> list[float | None]:
    """The ask/act decision: 1 when the policy asks iff the turn needs it, -1 when it asks needlessly or acts on an
    unresolved ambiguity (and for output that makes no decision).

    Both mistakes cost the same on purpose: how good the question or the action is, is scored by `question`,
    `tool_call` and `answer`, which apply only when the policy took the gold branch (None otherwise), so a wrong
    decision loses the same on every kind of row (see tests/training/test_rewards.py, the symmetry table).

    >>> clarify_reward(['<clarify>Yes\\nWhich city?</clarify>', '<clarify>No</clarify>Booked.', 'garbage'], act=["clarify"] * 3)
    [1.0, -1.0, -1.0]
    >>> clarify_reward(['<clarify>Yes\\nWhich city?</clarify>', '<clarify>No</clarify><tool_call>{"name": "f", "arguments": {}}</tool_call>'],
    ...                act=["tool_call"] * 2)
    [-1.0, 1.0]
    """
    rewards: list[float | None] = []
    for i, p in enumerate(_parsed(completions, columns)):
        needed = _col(columns, "act", i, "tool_call") == "clarify"
        rewards.append(-1.0 if p.act is None else 1.0 if (p.act == "clarify") == needed else -1.0)
    return rewards


def question_reward(completions: Sequence[Any], **columns: Any) -> list[float | None]:
    """On turns that need a question and get one: the overlap (Jaccard) between the slots it asks about
    (`question_targets`) and the gold target slots. None elsewhere.

    >>> slots = json.dumps([{"name": "city", "description": "City"}, {"name": "time", "description": "Time"}])
    >>> question_reward(['<clarify>Yes\\nWhich city?</clarify>', '<clarify>Yes\\nWhich city and time?</clarify>',
    ...                  '<clarify>Yes\\nAnything else?</clarify>', '<clarify>No</clarify>Booked.'],
    ...                 act=["clarify"] * 4, target_slots=[["city"]] * 4, slots=[slots] * 4)
    [1.0, 0.5, 0.0, None]
    """
    rewards: list[float | None] = []
    for i, p in enumerate(_parsed(completions, columns)):
        if _col(columns, "act", i) != "clarify" or p.act != "clarify":
            rewards.append(None)
            continue
        gold = set(_col(columns, "target_slots", i, []) or [])
        asked = question_targets(p.question or "", slot_specs(_col(columns, "slots", i, "[]")))
        rewards.append(round(len(gold & asked) / len(gold | asked), 4) if gold | asked else 0.0)
    return rewards


def tool_call_reward(completions: Sequence[Any], **columns: Any) -> list[float | None]:
    """Tool accuracy on turns whose gold act is a call: 1 for an exact call, else 0.25 for the right tool plus 0.75 x
    argument F1, minus 0.5 x the share of arguments holding a value the user never gave (an invented value).
    An answer (or no readable act) where a call is due scores -1 and a call that cannot be read -0.5, below any
    readable call (-0.5 at worst), so a weak policy is pushed towards calling rather than away from it. None on turns
    that should not call a tool, and when the policy asks instead (that mistake is `clarify`'s to score).

    >>> cols = dict(act=["tool_call"] * 5, gold_name=["book"] * 5, gold_args=['{"city": "Oakland", "n": 2}'] * 5,
    ...             defaults=["{}"] * 5, user_texts=[["A table in Oakland for 2"]] * 5)
    >>> call = lambda args: '<clarify>No</clarify><tool_call>{"name": "book", "arguments": ' + args + '}</tool_call>'
    >>> tool_call_reward([call('{"city": "Oakland", "n": 2}'), call('{"city": "Oakland", "n": 3}'),
    ...                   call('{"city": "Paris", "n": 2}'), '<clarify>No</clarify>Sure.', call('{"city": ')], **cols)
    [1.0, 0.375, 0.375, -1.0, -0.5]
    >>> tool_call_reward(['anything', '<clarify>Yes\\nWhich city?</clarify>'], act=["clarify", "tool_call"])
    [None, None]
    """
    rewards: list[float | None] = []
    for i, p in enumerate(_parsed(completions, columns)):
        if _col(columns, "act", i) != "tool_call" or p.act == "clarify":
            rewards.append(None)
            continue
        if p.act != "tool_call":
            rewards.append(-1.0)
            continue
        if p.call_args is None:
            rewards.append(-0.5)
            continue
        gold_name = _col(columns, "gold_name", i, "")
        gold_args = json_value(_col(columns, "gold_args", i, "{}"), {})
        defaults = json_value(_col(columns, "defaults", i, "{}"), {})
        if call_matches(p.call_name or "", p.call_args, gold_name, gold_args, defaults):
            rewards.append(1.0)
            continue
        score = (0.25 if p.call_name == gold_name else 0.0) + 0.75 * argument_f1(p.call_args, gold_args, defaults)
        # A value equal to the gold one is grounded by construction (gold calls are validated against the user's words).
        invented = [
            s for s in ungrounded_args(p.call_args, _col(columns, "user_texts", i, []) or [], defaults)
            if normalize(p.call_args[s]) != normalize(gold_args.get(s, object()))
        ]
        score -= 0.5 * len(invented) / max(1, len(p.call_args))
        rewards.append(round(score, 4))
    return rewards


def answer_reward(completions: Sequence[Any], **columns: Any) -> list[float | None]:
    """Answer correctness on turns whose gold act is an answer: the share of the facts of the last tool result that the
    gold answer states (confirmation ids, names, times...) which the predicted answer states too; 0 for a call or
    unreadable output. None on other turns and when the policy asks instead (`clarify` scores that).

    >>> cols = dict(act=["answer"] * 4, gold_content=["Booked at Nopa, confirmation RES-1."] * 4,
    ...             last_tool_result=['{"restaurant_name": "Nopa", "confirmation_id": "RES-1"}'] * 4)
    >>> answer_reward(['<clarify>No</clarify>Done: Nopa, RES-1.', '<clarify>No</clarify>Done at Nopa.',
    ...                '<clarify>Yes\\nWhat?</clarify>', 'junk'], **cols)
    [1.0, 0.5, None, 0.0]
    """
    rewards: list[float | None] = []
    for i, p in enumerate(_parsed(completions, columns)):
        if _col(columns, "act", i) != "answer" or p.act == "clarify":
            rewards.append(None)
            continue
        if p.act != "answer":
            rewards.append(0.0)
            continue
        gold = _col(columns, "gold_content", i, "")
        result = leaf_values(json_value(_col(columns, "last_tool_result", i, ""), {}))
        facts = [v for v in result if v is not None and not isinstance(v, bool) and mentioned(v, [gold])]
        if not facts:
            rewards.append(1.0)
            continue
        rewards.append(round(sum(mentioned(v, [p.answer or ""]) for v in facts) / len(facts), 4))
    return rewards


def turn_efficiency_reward(completions: Sequence[Any], **columns: Any) -> list[float | None]:
    """Do not spend turns: on a turn that needs a question, one about slots the user already gave, or about nothing
    the tools take, costs up to -1. None where the policy does not ask or no question is due (`clarify` scores that).

    >>> slots = json.dumps([{"name": "city", "description": "City"}, {"name": "time", "description": "Time"}])
    >>> cols = dict(user_texts=[["A table in Oakland"]] * 4, slots=[slots] * 4, act=["clarify"] * 4,
    ...             goal=['{"city": "Oakland", "time": "7 pm"}'] * 4, gold_args=["{}"] * 4)
    >>> turn_efficiency_reward(['<clarify>Yes\\nWhat time?</clarify>', '<clarify>Yes\\nWhich city?</clarify>',
    ...                         '<clarify>Yes\\nHmm?</clarify>', '<clarify>No</clarify>Ok.'], **cols)
    [0.0, -1.0, -0.5, None]
    """
    rewards: list[float | None] = []
    for i, p in enumerate(_parsed(completions, columns)):
        if p.act != "clarify" or _col(columns, "act", i) != "clarify":
            rewards.append(None)
            continue
        asked = question_targets(p.question or "", slot_specs(_col(columns, "slots", i, "[]")))
        if not asked:
            rewards.append(-0.5)
            continue
        known = {**json_value(_col(columns, "goal", i, "{}"), {}), **json_value(_col(columns, "gold_args", i, "{}"), {})}
        texts = _col(columns, "user_texts", i, []) or []
        redundant = [s for s in asked if s in known and mentioned(known[s], texts)]
        rewards.append(-len(redundant) / len(asked))
    return rewards


REWARDS: dict[str, RewardFunc] = {
    "format": format_reward,
    "clarify": clarify_reward,
    "question": question_reward,
    "tool_call": tool_call_reward,
    "answer": answer_reward,
    "turn_efficiency": turn_efficiency_reward,
}


def get_rewards(names: Sequence[str]) -> list[RewardFunc]:
    """Reward functions by name; an unknown name is a config error that lists the valid ones.

    >>> [f.__name__ for f in get_rewards(["format", "clarify"])]
    ['format_reward', 'clarify_reward']
    """
    unknown = [n for n in names if n not in REWARDS]
    if unknown:
        raise ConfigError(f"unknown reward(s) {', '.join(unknown)}; valid rewards: {', '.join(REWARDS)}")
    return [REWARDS[n] for n in names]
