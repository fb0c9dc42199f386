"""Checking functions shared by the validators (pipeline/stages/validate.py) and the rewards (training/rewards.py),
so what is filtered out of the dataset and what is rewarded in training cannot drift apart.

Values are compared after `normalize`: case-folded, whitespace collapsed. "Mentioned" means the normalized value
occurs in a text as a whole phrase (not inside a longer word or number).
"""

from __future__ import annotations

import re
from functools import lru_cache
from collections.abc import Iterable, Mapping
from typing import Any

from speakrl.schemas.catalog import SlotSpec

_NUMBER_WORDS = {
    "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six",
    "7": "seven", "8": "eight", "9": "nine", "10": "ten", "11": "eleven", "12": "twelve",
}
# Words that name a slot's kind rather than its subject: "restaurant_name" is asked about as "which restaurant".
_GENERIC_WORDS = {"name", "type", "number", "id", "of", "the", "a", "to", "for", "kind", "value"}
# How people ask about common slots without saying the slot's name.
_CUES = {
    "date": ("date", "day", "when"),
    "time": ("time", "when", "what hour"),
    "city": ("city", "where", "which town"),
    "party": ("how many", "people", "party", "guests"),
    "size": ("how many", "size"),
    "passengers": ("how many", "passengers", "people"),
    "tickets": ("how many", "tickets"),
    "amount": ("how much", "amount"),
    "location": ("where", "location"),
}


def normalize(value: Any) -> str:
    """Canonical text of a value.

    >>> normalize("  San  Jose ")
    'san jose'
    >>> normalize(4.0), normalize(True)
    ('4', 'true')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return " ".join(str(value).lower().split())


@lru_cache(maxsize=1 << 16)  # values repeat across a run; re's own cache is too small for them
def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w.:-])" + re.escape(phrase) + r"(?![\w:]|\.\d)")


def mentioned(value: Any, texts: Iterable[str]) -> bool:
    """Whether `value` is said, as a whole phrase, in any of `texts` (digits also match their number word).

    >>> mentioned("San Jose", ["Book me something in san jose please"])
    True
    >>> mentioned(4, ["a table for four"]), mentioned(4, ["at 14:00"])
    (True, False)
    """
    target = normalize(value)
    return bool(target) and any(_said(target, normalize(text)) for text in texts)


def mentioned_values(values: Iterable[Any], text: str) -> list[Any]:
    """The `values` that `mentioned` finds in `text`, in order (the text is normalized once).

    >>> mentioned_values(["San Jose", 4, "Oslo", "jose"], "Four seats in San Jose")
    ['San Jose', 4, 'jose']
    """
    low = normalize(text)
    return [v for v in values if _said(normalize(v), low)]


def _said(target: str, low: str) -> bool:
    """`mentioned` for a normalized value and text. A substring test comes first: most values are not in
    most texts, and it spares the regex search (and compiling a pattern for every new value)."""
    if not target:
        return False
    if target in low and _phrase_pattern(target).search(low):
        return True
    word = _NUMBER_WORDS.get(target)
    return word is not None and word in low and _phrase_pattern(word).search(low) is not None


def leaf_values(obj: Any) -> list[Any]:
    """The scalar values inside a JSON value (a tool result), in order.

    >>> leaf_values({"count": 2, "results": [{"name": "A"}, {"name": "B", "open": None}]})
    [2, 'A', 'B', None]
    """
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in leaf_values(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in leaf_values(v)]
    return [obj]


def with_defaults(args: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments with the tool's declared defaults filled in, so an omitted default equals an explicit one."""
    return {**defaults, **args}


def ungrounded_args(args: Mapping[str, Any], user_texts: Iterable[str], defaults: Mapping[str, Any]) -> list[str]:
    """Slots whose value the user never said and that are not the tool's declared default: invented values.

    >>> ungrounded_args({"city": "Oakland", "party_size": 2, "seating": "indoor"},
    ...                 ["a table in Oakland for 2"], {"seating": "indoor"})
    []
    >>> ungrounded_args({"city": "Oakland", "time": "7:30 pm"}, ["a table in Oakland"], {})
    ['time']
    """
    texts = list(user_texts)
    return [
        slot
        for slot, value in args.items()
        if not (slot in defaults and normalize(defaults[slot]) == normalize(value))
        # A yes/no preference is said by naming it ("with outdoor seating"); the text cannot hold "True".
        and not mentioned(slot_label(slot) if isinstance(value, bool) else value, texts)
    ]


def _pairs(args: Mapping[str, Any], defaults: Mapping[str, Any]) -> set[tuple[str, str]]:
    return {(k, normalize(v)) for k, v in with_defaults(args, defaults).items()}


def argument_f1(pred_args: Mapping[str, Any], gold_args: Mapping[str, Any], defaults: Mapping[str, Any]) -> float:
    """F1 over (slot, value) pairs after filling defaults: partial credit for partly right calls.

    >>> argument_f1({"city": "Oakland", "time": "7 pm"}, {"city": "oakland", "time": "8 pm"}, {})
    0.5
    >>> argument_f1({}, {}, {})
    1.0
    """
    pred, gold = _pairs(pred_args, defaults), _pairs(gold_args, defaults)
    if not pred and not gold:
        return 1.0
    hits = len(pred & gold)
    if hits == 0:
        return 0.0
    precision, recall = hits / len(pred), hits / len(gold)
    return 2 * precision * recall / (precision + recall)


def call_matches(pred_name: str, pred_args: Mapping[str, Any], gold_name: str, gold_args: Mapping[str, Any],
                 defaults: Mapping[str, Any]) -> bool:
    """Exact match of a tool call: same tool, same arguments once defaults are filled.

    >>> call_matches("book", {"n": 2}, "book", {"n": "2", "seat": "any"}, {"seat": "any"})
    True
    """
    return pred_name == gold_name and _pairs(pred_args, defaults) == _pairs(gold_args, defaults)


def slot_words(name: str) -> list[str]:
    """Content words of a slot name: "restaurant_name" -> ["restaurant"]."""
    words = name.lower().split("_")
    return [w for w in words if w not in _GENERIC_WORDS] or words


def slot_label(name: str) -> str:
    """How a question names a slot; always contains one of the slot's cues.

    >>> slot_label("restaurant_name"), slot_label("party_size")
    ('restaurant', 'party size')
    """
    return " ".join(slot_words(name))


def slot_cues(slot: SlotSpec) -> set[str]:
    """Phrases that show a question is about `slot`: its name's content words, their usual cues, and its enum values."""
    words = slot_words(slot.name)
    cues = {" ".join(words), *words}
    for w in words:
        cues.update(_CUES.get(w, ()))
    cues.update(normalize(v) for v in slot.enum or ())
    return {c for c in cues if c}


def question_targets(question: str, slots: Iterable[SlotSpec]) -> set[str]:
    """Names of the slots a clarification question asks about (by cue phrases, see `slot_cues`).

    >>> from speakrl.schemas.catalog import SlotSpec
    >>> slots = [SlotSpec(name="party_size", description=""), SlotSpec(name="restaurant_name", description="")]
    >>> sorted(question_targets("Which restaurant, and how many people?", slots))
    ['party_size', 'restaurant_name']
    >>> question_targets("Anything else?", slots)
    set()
    """
    text = normalize(question)
    return {s.name for s in slots if any(_phrase_pattern(c).search(text) for c in slot_cues(s))}
