"""Checking functions shared by the validators (pipeline/stages/validate.py) and the rewards (training/rewards.py),
so what is filtered out of the dataset and what is rewarded in training cannot drift apart.

Values are compared after `normalize`: case-folded, whitespace collapsed. "Mentioned" means the normalized value
occurs in a text as a whole phrase (not inside a longer word or number).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
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
    "city": ("city", "where", "town", "metropolis", "area", "location", "anywhere", "somewhere"),
    "party": ("how many", "people", "party", "guests"),
    "size": ("how many", "size"),
    "passengers": ("how many", "passengers", "people"),
    "tickets": ("how many", "tickets"),
    "amount": ("how much", "amount"),
    "location": ("where", "location"),
    "cuisine": ("food",),  # "what kind of food"
    "title": ("movie", "film"),  # "which movie" asks for its title
    "restaurant": ("diner", "eatery"),
    "to": ("destination",),  # SGD's bare "to" and "from" slots are asked as the destination and origin
    "from": ("origin",),
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


def _is_phrase_in(phrase: str, text: str) -> bool:
    """Whether `phrase` occurs in `text` as a whole phrase: not inside a word, a number ("4" in "14", "2.5"), a time
    ("7" in "7:30") or a code ("48" in "RES-48"); a colon or point after it ends it unless a digit follows ("Seattle"
    is in "Seattle:"). Without a regex: values such as confirmation codes are new in every row, and compiling a
    pattern for each cost more than the search.

    >>> _is_phrase_in("seattle", "to seattle: now"), _is_phrase_in("7", "at 7:30"), _is_phrase_in("48", "res-48")
    (True, False, False)
    >>> _is_phrase_in("jose", "san jose"), _is_phrase_in("jose", "josefina or jose."), _is_phrase_in("2", "2.5 or 2")
    (True, True, True)
    """
    start = text.find(phrase)
    while start != -1:
        end = start + len(phrase)
        before, after = text[start - 1 : start], text[end : end + 1]
        starts = not before or not (before.isalnum() or before in "_.:-")
        ends = not after or not (after.isalnum() or after == "_" or (after in ":." and text[end + 1 : end + 2].isdigit()))
        if starts and ends:
            return True
        start = text.find(phrase, start + 1)
    return False


def mentioned(value: Any, texts: Iterable[str], today: date | None = None) -> bool:
    """Whether `value` is said, as a whole phrase, in any of `texts` (digits also match their number word; an ISO
    date or a 24-hour time also matches the ways people say it, see `spoken_forms`).

    >>> mentioned("San Jose", ["Book me something in san jose please"])
    True
    >>> mentioned(4, ["a table for four"]), mentioned(4, ["at 14:00"])
    (True, False)
    >>> mentioned("2019-03-02", ["tomorrow at 7 pm"], today=date(2019, 3, 1)), mentioned("19:00", ["tomorrow at 7 pm"])
    (True, True)

    A kind said in the plural after a count is said too ("4 family rooms" says "family room"), but not a plural
    alone ("Bayshore Suites" says no "suite"):

    >>> mentioned("family room", ["4 family rooms"]), mentioned("suite", ["two suites"]), mentioned("suite", ["at Bayshore Suites"])
    (True, True, False)
    """
    target = normalize(value)
    forms = _forms(target, today)
    return bool(forms) and any(_said(forms, low) or _said_counted(target, low) for low in map(normalize, texts))


def mentioned_values(values: Iterable[Any], text: str, today: date | None = None) -> list[Any]:
    """The `values` that `mentioned` finds in `text`, in order (the text is normalized once).

    >>> mentioned_values(["San Jose", 4, "Oslo", "jose"], "Four seats in San Jose")
    ['San Jose', 4, 'jose']
    """
    low = normalize(text)
    return [v for v in values if _said(_forms(target := normalize(v), today), low) or _said_counted(target, low)]


@lru_cache(maxsize=1 << 16)  # a row's values are looked for in each of its texts, and repeat across rows
def _forms(target: str, today: date | None) -> tuple[str, ...]:
    """The phrases that say a normalized value: itself, its number word, the ways people say it."""
    if not target:
        return ()
    forms = [target]
    if target in _NUMBER_WORDS:
        forms.append(_NUMBER_WORDS[target])
    return (*forms, *spoken_forms(target, today))


def _said(forms: tuple[str, ...], low: str) -> bool:
    """Whether one of `forms` is a whole phrase of the normalized text `low`."""
    return any(_is_phrase_in(form, low) for form in forms)


def plural(noun: str) -> str:
    """A noun in the plural, as the generator writes it after a count: "family rooms", "classes", "parties".

    >>> plural("family room"), plural("bus"), plural("party"), plural("day")
    ('family rooms', 'buses', 'parties', 'days')
    """
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")


_COUNT_WORD = re.compile(r"(?<![\w.:-])(?:\d+|" + "|".join(_NUMBER_WORDS.values()) + r") $")  # "4 ", "four "


def _said_counted(target: str, low: str) -> bool:
    """Whether the normalized text `low` says `target`, a kind of thing, in the plural right after a count: a user
    says "4 family rooms" for a count of rooms and a room_type of "family room". A plural without a count is
    another thing ("Bayshore Suites" is a hotel, not a suite)."""
    if not target[-1:].isalpha():
        return False
    many = plural(target)
    start = low.find(many)
    while start != -1:
        after = low[start + len(many):start + len(many) + 1]
        if _COUNT_WORD.search(low, 0, start) and not (after.isalnum() or after == "_"):
            return True
        start = low.find(many, start + 1)
    return False


_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december"]
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_ORDINAL_WORDS = [
    "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "eleventh",
    "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth", "eighteenth", "nineteenth",
    "twentieth", "twenty first", "twenty second", "twenty third", "twenty fourth", "twenty fifth", "twenty sixth",
    "twenty seventh", "twenty eighth", "twenty ninth", "thirtieth", "thirty first",
]
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


def _ordinals(day: int) -> list[str]:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return [f"{day}{suffix}", _ORDINAL_WORDS[day - 1], _ORDINAL_WORDS[day - 1].replace(" ", "-")]


def _date_forms(d: date, today: date | None) -> list[str]:
    month, abbr = _MONTHS[d.month - 1], _MONTHS[d.month - 1][:3]
    forms = [f"{month} {d.day}", f"{abbr} {d.day}", f"{d.month}/{d.day}"]
    for o in _ordinals(d.day):
        forms += [f"{month} {o}", f"{month} the {o}", f"{abbr} {o}", f"{o} of {month}"]
        if today is not None and (d.year, d.month) == (today.year, today.month):
            forms += [f"{o} of this month", f"the {o}"]  # a bare day of the month is one of the current month
    if today is not None:  # relative days resolve against the dialogue's date, as its speakers did
        delta, weekday = (d - today).days, _WEEKDAYS[d.weekday()]
        forms += {0: ["today", "tonight", "this evening"], 1: ["tomorrow"], 2: ["day after tomorrow"]}.get(delta, [])
        week = (d - timedelta(days=d.weekday())) - (today - timedelta(days=today.weekday()))
        if 0 < delta <= 7:  # the coming one
            forms += [f"next {weekday}", f"this coming {weekday}", f"on {weekday}"]
        if week.days == 0 and delta >= 0:
            forms += [f"this {weekday}", f"{weekday} this week"]
        if week.days == 7:
            forms += [f"{weekday} next week", f"next week {weekday}"]
    return forms


def _time_forms(hour: int, minute: int) -> list[str]:
    h12 = hour % 12 or 12
    words = [str(h12), *([_NUMBER_WORDS[str(h12)]] if str(h12) in _NUMBER_WORDS else [])]
    ampm = "am" if hour < 12 else "pm"
    periods = [p for p, ok in (("morning", hour < 12), ("afternoon", 12 <= hour < 18), ("evening", 16 <= hour < 23),
                               ("night", hour >= 18)) if ok]
    clock = [f"{h12}:{minute:02d}"]
    if minute == 0:
        clock += [f"{w} o'clock" for w in words]
        spoken = words
    else:
        spoken = clock[:]
        nxt = (h12 % 12) + 1
        named = {15: "quarter past", 30: "half past"}.get(minute)
        if named:
            spoken += [f"{named} {w}" for w in words]
        if minute == 45:
            spoken += [f"quarter to {nxt}", *([f"quarter to {_NUMBER_WORDS[str(nxt)]}"] if str(nxt) in _NUMBER_WORDS else [])]
        clock = spoken[:]  # "6:30", "half past 6", "quarter to 8" are times without am/pm
    forms = list(clock)
    for s in spoken:
        forms += [f"{s} {ampm}", f"{s}{ampm}", f"{s} {ampm[0]}.m."]
        forms += [f"{s} in the {p}" for p in periods] + [f"{p} {s}" for p in periods]
    if (hour, minute) == (12, 0):
        forms += ["noon", "midday"]
    if (hour, minute) == (0, 0):
        forms.append("midnight")
    return forms


def spoken_forms(value: str, today: date | None = None) -> list[str]:
    """How people say a normalized value: an ISO date as "march 1st", "the 1st of this month" or (given the
    dialogue's `today`) "tomorrow", "next friday"; a 24-hour time as "7 pm", "half past 6 in the evening"; a year as
    "'16" or (given `today`) "last year", "two years ago".
    Bare hours ("at 7") are not a time: they are as often a count. Other values have no other forms.

    >>> "7:30 pm" in spoken_forms("19:30"), "quarter to 8" in spoken_forms("19:45"), "7 in the morning" in spoken_forms("19:00")
    (True, True, False)
    >>> sorted(f for f in spoken_forms("2019-03-08", date(2019, 3, 1)) if "friday" in f)
    ['friday next week', 'next friday', 'next week friday', 'on friday', 'this coming friday']
    >>> spoken_forms("San Jose"), "two years back" in spoken_forms("2017", date(2019, 3, 1)), spoken_forms("2016")
    ([], True, ["'16"])
    """
    if m := _ISO_DATE.fullmatch(value):
        try:
            return _date_forms(date(int(m[1]), int(m[2]), int(m[3])), today)
        except ValueError:
            return []
    if m := _CLOCK.fullmatch(value):
        return _time_forms(int(m[1]), int(m[2]))
    if _YEAR.fullmatch(value):
        return _year_forms(int(value), today)
    return []


_YEAR = re.compile(r"(19|20)\d\d")


def _year_forms(year: int, today: date | None) -> list[str]:
    forms = [f"'{year % 100:02d}"]
    if today is not None:
        ago = today.year - year
        forms += {0: ["this year"], 1: ["last year"]}.get(ago, [])
        if ago > 0:
            counts = [str(ago), *([_NUMBER_WORDS[str(ago)]] if str(ago) in _NUMBER_WORDS else [])]
            forms += [f"{n} {unit} {rel}" for n in counts for unit in ("year", "years") for rel in ("ago", "back")]
    return forms


# The system message states the date as the generator writes it ("Today is Friday, March 1, 2019") or in ISO form.
_TODAY = re.compile(r"\btoday is (?:\w+, )?(\d{4}-\d{2}-\d{2}|[A-Z][a-z]+ \d{1,2}, \d{4})\b", re.IGNORECASE)


def reference_date(system_text: str | None) -> date | None:
    """The dialogue's date, when its system message states it ("Today is Friday, March 1, 2019."): what relative days
    the user says resolve against.

    >>> reference_date("You are a helpful assistant. Today is Friday, March 1, 2019, and it is 9:00 am.")
    datetime.date(2019, 3, 1)
    >>> reference_date("Today is Friday, 2019-03-01."), reference_date("Hi")
    (datetime.date(2019, 3, 1), None)
    """
    m = _TODAY.search(system_text or "")
    if not m:
        return None
    if m[1][0].isdigit():
        return date.fromisoformat(m[1])
    return datetime.strptime(m[1], "%B %d, %Y").date()


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


def ungrounded_args(args: Mapping[str, Any], user_texts: Iterable[str], defaults: Mapping[str, Any],
                    today: date | None = None) -> list[str]:
    """Slots whose value the user never said and that are not the tool's declared default: invented values.
    `today`, the dialogue's date when it has one, lets relative days ("tomorrow") ground a date.

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
        and not (any(mentioned(p, texts) for p in flag_phrases(slot)) if isinstance(value, bool)
                 else mentioned(value, texts, today))
    ]


_FLAG_VERBS = {"has", "have", "serves", "serve", "is", "are", "allows", "allow", "offers", "includes", "with"}


def flag_phrases(slot: str) -> list[str]:
    """How a user names a yes/no slot: its label, and the label without its verb ("live music" of has_live_music).

    >>> flag_phrases("has_live_music"), flag_phrases("outdoor_seating"), flag_phrases("good_for_kids")
    (['has live music', 'live music'], ['outdoor seating'], ['good kids', 'good for kids'])
    """
    label = slot_label(slot)
    first, _, rest = label.partition(" ")
    phrases = [label, rest] if first in _FLAG_VERBS and rest else [label]
    spelled = slot.lower().replace("_", " ")  # the whole name, as a user says it: "good for kids"
    return phrases + [spelled] * (spelled not in phrases)


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
    return set(_ranked_cues(slot))


# Single words too common to show what a question asks about ("check_in_date" is not asked about by saying "in").
_WEAK_WORDS = {"in", "on", "at", "by", "up", "off", "out", "with", "from", "and", "or", "is", "be", "new", "old"}
# Words that make a slot a classification of something: "what kind of restaurant" asks its cuisine.
_KIND_WORDS = {"type", "kind", "category", "genre", "cuisine", "style", "class"}
# How a question asks for a kind ("what style of restaurant"), and how a description states one ("Type of event").
_ASKED_KINDS = ("type", "kind", "sort", "style", "category")
_TYPE_OF = re.compile(r"(?:the )?(?:type|kind|category) of (?:the )?(\w+)")
_DESCRIPTION_STOP = {"the", "a", "an", "of", "for", "in", "to", "or", "and", "is", "be", "which", "where", "that",
                     "this", "with", "by", "on", "at", "from", "as", "it", "its", "either", "if"}


def _ranked_cues(slot: SlotSpec) -> dict[str, int]:
    """Cue phrase -> how specifically it names the slot: 3 for "kind of X" when the slot is described as "Type of X",
    2 for the slot's own label, an enum or known value, or "kind of X" when a classifying slot (cuisine, genre)
    mentions X (or a usual word for X: "eatery") in its description, 1 for one word of its name or a usual way of
    asking ("when", "how many", "number of")."""
    return _cues_of(slot.name, slot.description, slot.type, tuple(slot.enum or ()), tuple(slot.values))


@lru_cache(maxsize=1 << 12)  # the same few slots are read for every question of a run
def _cues_of(name: str, description: str, type_: str, enum: tuple[str, ...], values: tuple[str, ...]) -> dict[str, int]:
    parts = name.lower().split("_")
    words = slot_words(name)
    # "city_of_event" is a city: the words after "of" qualify it and are no cue alone
    before_of = [w for w in parts[:parts.index("of")] if w not in _GENERIC_WORDS] if "of" in parts[1:] else []
    head = set(before_of or words)
    cues = {w: 1 for w in words if w not in _WEAK_WORDS and w in head}
    description = normalize(description)
    for w in head:
        # "where" asks for a place, not for the name of one ("Name of event location" is asked "which venue")
        cues.update({c: 1 for c in _CUES.get(w, ()) if not (description.startswith("name of") and _WH_CUE.match(c))})
    if "number" in parts:  # number_of_seats is asked as "how many"
        cues.setdefault("how many", 1)
    if description.startswith("number of"):  # a count ("Number of seats to find event tickets for"): "what number of tickets"
        cues.setdefault("number of", 1)
    cues.update({normalize(v): 2 for v in enum})
    # known values offered as examples ("Italian, Indian or something else?"); not numbers, dates or times,
    # which many slots share
    if type_ == "string":
        cues.update({normalize(v): 2 for v in values if not re.search(r"\d", v) and normalize(v) not in ("true", "false")})
    if _KIND_WORDS & set(parts):  # "Cuisine of food served in the restaurant": "what kind of restaurant"
        nouns = (set(re.findall(r"[a-z]{3,}", description)) - _DESCRIPTION_STOP - _KIND_WORDS) | {" ".join(words)}
        # and of the usual words for those nouns ("what kind of eatery")
        nouns |= {c for n in list(nouns) for c in _CUES.get(n, ()) if " " not in c and not _WH_CUE.match(c)}
        for noun in nouns:
            cues.update({f"{kind} of {noun}": 2 for kind in _ASKED_KINDS})  # and "what type of cuisine"
    if m := _TYPE_OF.match(description):  # "Type of event" is asked as "what kind of event" or "the event category"
        cues.update({f"{kind} of {m[1]}": 3 for kind in _ASKED_KINDS})
        cues.update({f"{m[1]} {kind}": 3 for kind in ("type", "kind", "category")})
    cues[" ".join(words)] = max(cues.get(" ".join(words), 0), 2)
    return {c: rank for c, rank in cues.items() if c}


_HYPHENATED = re.compile(r"(?<=[a-z])-(?=[a-z])")  # between letters: a compound word, not a code ("RES-48")
_QUOTED = re.compile(r'"[^"]*"|“[^”]*”|\bwhen you (?:say|said|mention|mentioned)\b')
# A sentence that asks: it ends with "?" or opens like a question or request ("What city should I check for events.")
_ASKING_SENTENCE = re.compile(
    r"[^.!?]*\?|(?:^|(?<=[.!?]))\s*(?:(?:ok(?:ay)?|sure|so|also|great|and)\W+)*"
    r"(?:what|which|where|when|how|who|do|does|did|is|are|can|could|would|will|should|may|please|tell|let)\b[^.!?]*")
_SENTENCE = re.compile(r"[^.!?]+[.!?]*")
# Words before a phrase that make it what is asked ("which event", "any particular city", "a preference on the city",
# "the city and the event") or what is talked about ("the event", "for events", "for a restaurant", "this event").
_ASKING_WORDS = r"(?:which|what|any|particular|specific|certain|preferred|favou?rite)"
_LISTED = re.compile(r"(?:\band|\bor|,)(?: (?:the|a|an|your))? $")  # "the doctor and the date"
_ASKED_BEFORE = re.compile(
    rf"(?:\b{_ASKING_WORDS}(?:'s| is| are| was| were| would be)?|\bpreferences? (?:on|for|of|about|in)|\binterested in|\bin terms of|\bin regards? to|\bregarding|\bname of"
    r"|\b(?:kind|type|sort|style|categor(?:y|ie))s? of)(?: (?:the|a|an|your))?(?: (?!for\b|in\b|to\b)\w+)? $"
    r"|" + _LISTED.pattern)
_TOPIC_BEFORE = re.compile(
    rf"(?:\b(?:the|this|that|these|those|your)|\b(?:for|in|at|to|of|about)(?: (?:a|an))?)(?: (?!{_ASKING_WORDS}\b)\w+)? $")
_WH_CUE = re.compile(r"(?:when|where|how|what|which)\b")


@lru_cache(maxsize=1 << 12)
def _needle(cue: str) -> str:
    """A piece of text every match of the cue's pattern contains: its longest word, less a "y" that turns "ies"."""
    word = max(cue.split(" "), key=len)
    return word[:-1] if len(word) > 3 and word.endswith("y") else word


# Words of a slot's name this long are read through one slip of the keyboard ("resturant"); shorter ones are too
# close to other words ("time" and "tome", "even" and "event").
_TYPO_LEN = 6
_LONG_WORD = re.compile(rf"[a-z]{{{_TYPO_LEN - 1},}}")


def _spelled(text: str, words: set[str]) -> str:
    """`text` with each word one edit away from one of `words` (a letter dropped, added, changed, or two swapped;
    the first letter kept) written as that word: "is there a specific restuarant?" names the restaurant.

    >>> _spelled("is there a specific restuarant? what tinme?", {"restaurant", "time"})
    'is there a specific restaurant? what tinme?'
    """
    def fix(m: re.Match[str]) -> str:
        w = m.group()
        return w if w in words else next((v for v in words if v[0] == w[0] and _one_edit(w, v)), w)

    words = {w for w in words if len(w) >= _TYPO_LEN}
    return _LONG_WORD.sub(fix, text) if words else text


def _one_edit(a: str, b: str) -> bool:
    """Whether `a` becomes `b` by one dropped, added or changed letter, or two neighbours swapped."""
    if len(a) > len(b):
        a, b = b, a
    if len(b) - len(a) > 1 or a == b:
        return False
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) < len(b):
        return a[i:] == b[i + 1:]
    return a[i + 1:] == b[i + 1:] or (a[i + 1:i + 2] == b[i:i + 1] and a[i:i + 1] == b[i + 1:i + 2] and a[i + 2:] == b[i + 2:])


@lru_cache(maxsize=1 << 12)
def _cue_pattern(cue: str) -> re.Pattern[str]:
    """A cue as a whole phrase, its words also in the plural ("kind of event" in "what kinds of events"), an article
    allowed after "of" ("the categories of the events")."""
    words = cue.split(" ")
    forms = [re.escape(w[:-1]) + "(?:y|ies)" if len(w) > 3 and w.endswith("y") and w[-2] not in "aeiou" else re.escape(w) + "(?:s|es)?"
             for w in words]
    phrase = forms[0] + "".join((" (?:(?:the|a|an) )?" if before == "of" else " ") + f for before, f in zip(words, forms[1:]))
    return re.compile(r"(?<![\w.:-])" + phrase + r"(?![\w:]|\.\d)")


def question_targets(question: str, slots: Iterable[SlotSpec]) -> set[str]:
    """Names of the slots a clarification question asks about.

    Each phrase of the question counts for the slots that it names most specifically: the longest cue wins its
    words ("pickup date" names pickup_date, not pickup_time or return_date), a slot's own label beats a word of
    another slot's name ("the event" names event_name, not event_date), and a phrase that still names several slots
    goes to those the question names elsewhere ("luxury or standard: which ride?" is about ride_type, not ride_id)
    or, asked as "which X", to the slot that identifies X rather than classifies it ("which event?": event_name).
    A slot described as "Type of X" is asked as "what kind of X" or "the X category", a classifying slot (cuisine,
    genre) as "what kind of" a noun of its description ("what style of restaurant"); a string slot's known values
    (not numbers, dates or times) name it when offered ("Italian, Indian or something else?"), a count described as
    "Number of ..." is asked as "what number of", and a word of a slot's name is read through one slip of the
    keyboard when it has six letters or more ("resturant").
    What a sentence is about is not what it asks: a phrase after "the", "this", "for" or "in" ("what city is the
    restaurant in?", "which city should I search for events?") or right after another slot's value ("sports
    events") counts only when the question asks nothing else ("can you give me the name of the event?"), unless it
    is asked ("any particular event", "a preference on the city") or listed with what is ("the doctor and the date").
    Quoted words (the user's phrase, a rejected value) are not asked about, and a loose cue (one word of a slot's
    name, "when", "how many") counts only in a sentence that asks, by its "?" or its opening ("What city should I
    check."); "Date night" among listed options is no date.

    >>> from speakrl.schemas.catalog import SlotSpec
    >>> slots = [SlotSpec(name="party_size", description=""), SlotSpec(name="restaurant_name", description="")]
    >>> sorted(question_targets("Which restaurant, and how many people?", slots))
    ['party_size', 'restaurant_name']
    >>> question_targets("Anything else?", slots)
    set()
    >>> question_targets("Which restaurants do you like?", slots), question_targets("How many seats?", [SlotSpec(name="number_of_seats", description="")])
    ({'restaurant_name'}, {'number_of_seats'})
    >>> events = [SlotSpec(name=n, description="") for n in ("event_date", "event_title", "new_title")]
    >>> question_targets("Which event title should I use?", events)
    {'event_title'}
    >>> restaurant = [SlotSpec(name="city", description="City"), SlotSpec(name="restaurant_name", description="Name of the restaurant")]
    >>> question_targets("What city is the restaurant in?", restaurant), question_targets("Which restaurant?", restaurant)
    ({'city'}, {'restaurant_name'})
    >>> stay = [SlotSpec(name=n, description="") for n in ("check_in_date", "check_out_date")]
    >>> question_targets("Which check-in date?", stay), question_targets("And the check-out date?", stay)
    ({'check_in_date'}, {'check_out_date'})
    """
    slots = list(slots)
    # "check-in date" is the check_in_date (the hyphen becomes a space: positions are kept)
    text = _HYPHENATED.sub(" ", _spelled(normalize(question), {w for slot in slots for w in slot.name.lower().split("_")}))
    # Quoted words are the user's (or a rejected value), not what is asked: blank them, keeping positions.
    text = _QUOTED.sub(lambda m: " " * len(m.group()), text)
    asks = [m.span() for m in _ASKING_SENTENCE.finditer(text)]
    # span -> (rank, slots naming it with that rank)
    spans: dict[tuple[int, int], tuple[int, set[str]]] = {}
    for slot in slots:
        for cue, rank in _ranked_cues(slot).items():
            if _needle(cue) not in text:  # most cues are not in the question: skip their regex
                continue
            for m in _cue_pattern(cue).finditer(text):
                if rank == 1 and asks and not any(s <= m.start() < e for s, e in asks):
                    continue  # a loose cue ("date", "when") counts only in the sentence that asks
                best_rank, names = spans.get(m.span(), (0, set()))
                if rank > best_rank:
                    spans[m.span()] = (rank, {slot.name})
                elif rank == best_rank:
                    names.add(slot.name)
    claimed: list[tuple[int, int, set[str]]] = []
    # Longest, then most specific, first; a span inside (or across) words already claimed says nothing new.
    for (start, end), (_, names) in sorted(spans.items(), key=lambda kv: (kv[0][0] - kv[0][1], -kv[1][0], len(kv[1][1]))):
        if not any(s < end and start < e for s, e, _ in claimed):
            claimed.append((start, end, names))
    claimed.sort(key=lambda c: c[0])
    # "how many travelers" asks for the travelers: a way of asking right before a phrase that names a slot is that
    # phrase's ("how many" is also a cue of any *_number slot, such as a trip number)
    claimed = [c for c, after in zip(claimed, [*claimed[1:], None])
               if not (after and _WH_CUE.match(text, c[0]) and text[c[1]:after[0]] == " " and not c[2] & after[2])]
    sentences = [m.span() for m in _SENTENCE.finditer(text)]
    sentence_of = [next(((s, e) for s, e in sentences if s <= c[0] < e), (0, len(text))) for c in claimed]
    marks = [_mark(text, sentence_of[i][0], c[0], c[2], claimed[i - 1] if i else None) for i, c in enumerate(claimed)]
    asked: list[set[str]] = []
    topics: list[set[str]] = []
    for i, (start, end, names) in enumerate(claimed):
        others = [j for j, (s, _, n) in enumerate(claimed) if sentence_of[j] == sentence_of[i] and not n & names]
        if marks[i] == "described":
            is_topic = True
        elif marks[i] == "topic":
            # "what city is the restaurant in?": the restaurant is what the question is about, not what it asks,
            # when the sentence asks something else first or plainly ("the city for the event", "the event in
            # which city"), unless the two are listed together ("the doctor and the date")
            coordinated = any(_LISTED.search(text, sentence_of[i][0], claimed[j][0]) for j in others if claimed[j][0] > end)
            is_topic = not coordinated and any(claimed[j][0] < start or marks[j] != "topic" for j in others)
        else:  # "see events in which city": a phrase that names several slots alike is the subject
            is_topic = marks[i] == "plain" and len(names) > 1 and bool(others)
        (topics if is_topic else asked).append(names)
    # What the question is about counts only when it asks nothing else ("can you give me the name of the event?").
    return _resolve(asked) or _resolve(topics)


def _mark(text: str, sentence_start: int, start: int, names: set[str], previous: tuple[int, int, set[str]] | None) -> str:
    """How the words before a phrase present it: "asked", "topic", "described" or "plain" (see `question_targets`)."""
    before = text[sentence_start:start]
    # "sports events", "Chinese restaurants": a noun right after another slot's value is what that value describes
    if previous is not None and previous[1] >= sentence_start and text[previous[1]:start] == " " and not previous[2] & names:
        return "described"
    if _WH_CUE.match(text, start) or _ASKED_BEFORE.search(before):
        return "asked"
    return "topic" if _TOPIC_BEFORE.search(before) else "plain"


def _resolve(phrases: list[set[str]]) -> set[str]:
    """The slots a list of phrases names: a phrase that names several slots goes to those named elsewhere ("luxury or
    standard: which ride?" is ride_type) or, asking "which X", to the X that is identified (by its name, id or title)
    rather than classified or dated ("which event?" asks event_name, not event_type; event_title, not event_date)."""
    found: set[str] = set()
    shared: list[set[str]] = []
    for names in phrases:
        if len(names) > 1 and not names & found:
            shared.append(names)  # decided below, once every phrase that names one slot has been read
        else:
            found |= (names & found) or names
    for names in shared:
        identified = {n for n in names if {"name", "id", "title"} & set(n.split("_"))}
        found |= (names & found) or identified or names
    return found
