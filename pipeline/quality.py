"""Detectors of what a careful reader of a published dialogue would flag: grammar slips, placeholder values,
Python literals in sentences, results that disagree with themselves, pasted tool descriptions, vague phrases whose
resolution contradicts them, and first questions that ask for only part of what was missing.

Each detector is a plain function over a Dialogue returning True when the defect is present; `defects` runs them
all. They are regexes and structural checks, independent of the generator's own grammar, so they also catch what
an LLM backend writes. `benchmarks/realism.py` reports their rates over whole runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from typing import Any

from speakrl.schemas.dialogue import Dialogue

# Words after "a" that start with a consonant sound, and after "an" that start with a vowel sound.
_A_EXCEPTIONS = re.compile(r"^(one|once|uni|use|usu|uti|eu|ewe|ure|uro|ubiq|u-|u\.)", re.I)
_AN_EXCEPTIONS = re.compile(r"^(hour|honest|honor|honour|heir|herb)", re.I)
_VOWEL_LETTERS = set("AEFHILMNORSX")  # letters whose name starts with a vowel sound: an SUV, an MRI, an X-ray
_ARTICLE = re.compile(r"\b(a|an|A|An)\s+([A-Za-z][\w'-]*)")
_DOUBLED = re.compile(r"\b([A-Za-z]+)\s+\1\b", re.I)
_LITERAL = re.compile(r"\b(True|False|None|null|true|false)\b|\{'|\['|': ")
_EMPTY = re.compile(r":\s*[.!?]|\(\s*\)|\b0 option|option\(s\)|\bNone\b\.")
CODE_WORDS = (
    "Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "India", "Juliett", "Kilo", "Lima",
    "Oscar", "Papa", "Quebec", "Romeo", "Sierra", "Tango", "Uniform", "Victor", "Whiskey", "Xray", "Yankee", "Zulu",
    "Gamma", "Theta", "Kappa", "Omega", "Sigma", "Zeta", "Iota", "Lambda", "Epsilon", "Beta",
)
_PLACEHOLDER = re.compile(r"^([A-Z][a-z]+ )+(" + "|".join(CODE_WORDS) + r")$")
_NOW = re.compile(r"Today is (\w+), (\w+ \d{1,2}, \d{4})(?:, and it is (\d{1,2}:\d{2} [ap]m))?")
_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december"]


def _sentences(d: Dialogue) -> list[str]:
    """What people read: user and assistant text (not tool JSON)."""
    return [m.content for m in d.messages if m.role in ("user", "assistant") and m.content]


def article_error(word: str, article: str) -> bool:
    """Whether `article word` is wrong: "a animation", "an car", "a SUV".

    >>> article_error("animation", "a"), article_error("SUV", "a"), article_error("hour", "an"), article_error("one", "a")
    (True, True, False, False)
    """
    if len(word) > 1 and word.isupper() or (len(word) == 1 and word.isalpha()):  # spoken letter by letter
        vowel = word[0] in _VOWEL_LETTERS
    elif word[0].lower() in "aeiou":
        vowel = not _A_EXCEPTIONS.match(word)
    else:
        vowel = bool(_AN_EXCEPTIONS.match(word))
    return vowel != (article.lower() == "an")


def has_article_error(d: Dialogue) -> bool:
    return any(article_error(m.group(2), m.group(1)) for text in _sentences(d) for m in _ARTICLE.finditer(text))


def has_doubled_word(d: Dialogue) -> bool:
    return any(_DOUBLED.search(text) for text in _sentences(d))


def has_python_literal(d: Dialogue) -> bool:
    return any(_LITERAL.search(text) for text in _sentences(d))


def _call_values(d: Dialogue) -> Iterable[Any]:
    for call in d.gold_calls:
        yield from call.args().values()
    yield from d.goal.values()


def is_placeholder(value: Any, slot: str | None = None) -> bool:
    """A made-up stand-in rather than a value: "Pet Name Romeo", "Amount Charlie", or the slot's own label + a word.

    >>> is_placeholder("Pet Name Romeo"), is_placeholder("Rover"), is_placeholder("To Delta", "to")
    (True, False, True)
    """
    if not isinstance(value, str):
        return False
    if _PLACEHOLDER.match(value):
        return True
    if slot:
        label = " ".join(w.capitalize() for w in slot.split("_"))
        return value.startswith(label + " ") and value[len(label) + 1:][:1].isupper()
    return False


def has_placeholder(d: Dialogue) -> bool:
    if any(is_placeholder(v) for v in _call_values(d)):
        return True
    return any(is_placeholder(v, k) for call in d.gold_calls for k, v in call.args().items())


def has_count_mismatch(d: Dialogue) -> bool:
    import json

    for m in d.messages:
        if m.role == "tool" and m.content:
            result = json.loads(m.content)
            if isinstance(result, dict) and "count" in result and isinstance(result.get("results"), list):
                if result["count"] != len(result["results"]):
                    return True
    return False


def has_empty_answer(d: Dialogue) -> bool:
    """A closing that lists nothing: "Here's what I found: .", "0 option(s)", an answer with no text."""
    answers = [d.messages[lab.message_index].content or "" for lab in d.labels if lab.act == "answer"]
    return any(not a.strip() or _EMPTY.search(a) for a in answers)


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return {tuple(words[i: i + n]) for i in range(len(words) - n + 1)}


def has_pasted_description(d: Dialogue) -> bool:
    """The first user turn contains a tool's description: the whole of a short one, or any 5 words in a row of a
    longer one ("... search one-way flights between two cities on a date for me")."""
    first = next((m.content or "" for m in d.messages if m.role == "user"), "")
    words = " ".join(re.findall(r"[a-z0-9]+", first.lower()))
    grams = _ngrams(first, 5)
    for tool in d.tools:
        desc = re.findall(r"[a-z0-9]+", tool.function.description.lower())
        if len(desc) < 5:
            if len(desc) >= 3 and f" {' '.join(desc)} " in f" {words} ":
                return True
        elif _ngrams(" ".join(desc), 5) & grams:
            return True
    return False


def reference_now(d: Dialogue) -> datetime | None:
    """The scenario's "now", as the system message states it."""
    system = d.messages[0].content or "" if d.messages and d.messages[0].role == "system" else ""
    m = _NOW.search(system)
    if not m:
        return None
    day = datetime.strptime(m.group(2), "%B %d, %Y")
    if m.group(3):
        t = datetime.strptime(m.group(3), "%I:%M %p")
        day = day.replace(hour=t.hour, minute=t.minute)
    return day


def parse_time(value: Any) -> tuple[int, int] | None:
    """(hour, minute) of "7:45 pm", "19:30", "noon".

    >>> parse_time("7:45 pm"), parse_time("19:30"), parse_time("12:05 am")
    ((19, 45), (19, 30), (0, 5))
    """
    text = str(value).strip().lower()
    if text in ("noon", "midday"):
        return 12, 0
    m = re.fullmatch(r"(\d{1,2})(?::(\d{2}))?\s*([ap])\.?m\.?", text) or re.fullmatch(r"(\d{1,2}):(\d{2})(?::\d{2})?", text)
    if not m:
        return None
    hour, minute = int(m.group(1)), int(m.group(2) or 0)
    if m.re.groups == 3:
        hour = hour % 12 + (12 if m.group(3) == "p" else 0)
    return (hour, minute) if 0 <= hour < 24 and 0 <= minute < 60 else None


def parse_date(value: Any, now: datetime | None) -> date | None:
    """The calendar date of "June 4th", "Saturday, June 6th", "2026-06-04" (a date without a year is the next one
    on or after `now`), and, given `now`, of "today", "tomorrow" and "Tuesday" or "this Tuesday" (the next one on
    or after today). "next Tuesday" is left alone: `checks._date_forms` hears it as the coming one, people as either.

    >>> now = datetime(2026, 8, 13)  # a Thursday
    >>> [str(parse_date(v, now)) for v in ("today", "tomorrow", "Tuesday", "this Thursday", "next Thursday", "next week")]
    ['2026-08-13', '2026-08-14', '2026-08-18', '2026-08-13', 'None', 'None']
    >>> parse_date("Tuesday", None) is None
    True
    """
    text = str(value).strip().lower()
    m = _ISO_DAY.fullmatch(text)
    if m:
        try:
            return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            return None
    m = _MONTH_DAY.search(text)
    if not m:
        return _relative_day(text, now.date()) if now else None
    month, day = _MONTHS.index(m.group(1)) + 1, int(m.group(2))
    year = int(m.group(3)) if m.group(3) else (now.year if now else 2026)
    try:
        found = date(year, month, day)
    except ValueError:
        return None
    if not m.group(3) and now and found < now.date():
        found = found.replace(year=year + 1)
    return found


_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
# Compiled once: `re`'s own cache holds 512 patterns, and the question checks compile more, so a pattern passed as a
# string was compiled again and again in a long run.
_ISO_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_MONTH_DAY = re.compile(r"\b(" + "|".join(_MONTHS) + r")\s+(\d{1,2})(?:st|nd|rd|th)?(?:,?\s+(\d{4}))?")
_THIS_WEEKDAY = re.compile(r"(?:this )?(" + "|".join(_WEEKDAYS) + ")")


def _relative_day(text: str, today: date) -> date | None:
    """The day that "today", "tomorrow", "Tuesday" or "this Tuesday" names, said on `today`."""
    if text in ("today", "tonight"):
        return today
    if text == "tomorrow":
        return today + timedelta(days=1)
    m = _THIS_WEEKDAY.fullmatch(text)
    if not m:
        return None
    return today + timedelta(days=(_WEEKDAYS.index(m.group(1)) - today.weekday()) % 7)


def _in(hour: int, lo: int, hi: int) -> bool:
    return lo <= hour < hi


# Time-of-day phrases and the hours they allow (first match wins).
_TIME_PHRASES: list[tuple[str, Callable[[int], bool]]] = [
    (r"early (in the )?morning|first thing", lambda h: _in(h, 4, 9)),
    (r"late (in the )?morning", lambda h: _in(h, 10, 12)),
    (r"morning|before (lunch|noon)", lambda h: _in(h, 4, 12)),
    (r"early (in the )?afternoon", lambda h: _in(h, 12, 15)),
    (r"late (in the )?afternoon|end of the (day|afternoon)", lambda h: _in(h, 15, 19)),
    (r"after lunch|afternoon", lambda h: _in(h, 12, 18)),
    (r"lunch|midday|noon", lambda h: _in(h, 11, 15)),
    (r"evening|dinner|after work|tonight", lambda h: _in(h, 17, 24)),
    (r"late at night|late night|late (show|screening)|night", lambda h: h >= 20 or h < 4),
]
_COUNT_PHRASES: list[tuple[str, Callable[[int], bool]]] = [
    (r"\bjust me\b|\bonly me\b|\bmyself\b|\bsolo\b|\bon my own\b", lambda n: n == 1),
    (r"\bcouple\b|\bme and my (partner|wife|husband|friend|mom|dad)\b|\bthe two of us\b|\bme and a friend\b",
     lambda n: n == 2),
    (r"\bfew\b", lambda n: 2 <= n <= 5),
    (r"\bsmall group\b", lambda n: 3 <= n <= 6),
    (r"\bkids\b|\bfamily\b|\bgroup\b|\beveryone\b|\bthe team\b|\bfriends\b", lambda n: n >= 3),
]


def vague_contradiction(phrase: str, value: Any, now: datetime | None) -> bool:
    """Whether the hidden value contradicts the vague phrase the user said instead of it.

    >>> vague_contradiction("in the afternoon", "7:45 am", None), vague_contradiction("in the afternoon", "3:15 pm", None)
    (True, False)
    >>> vague_contradiction("me and the kids", 1, None), vague_contradiction("early next month", "June 4th", datetime(2026, 5, 20))
    (True, False)
    >>> vague_contradiction("a late show", "5:30 pm", None), vague_contradiction("a late show", "10:55 pm", None)
    (True, False)
    >>> vague_contradiction("late afternoon", "1:15 pm", None), vague_contradiction("late afternoon", "4:30 pm", None)
    (True, False)
    >>> thursday = datetime(2026, 8, 13)
    >>> [vague_contradiction(p, v, thursday) for p, v in [("this weekend", "Tuesday"), ("this weekend", "Saturday"),
    ...                                                   ("later this week", "Tuesday"), ("later this week", "Friday")]]
    [True, False, True, False]
    >>> vague_contradiction("early in the week", "Friday", thursday), vague_contradiction("early in the week", "Tuesday", thursday)
    (True, False)
    """
    p = phrase.lower()
    t = parse_time(value)
    if t is not None:
        rule = next((ok for pat, ok in _TIME_PHRASES if re.search(pat, p)), None)
        return rule is not None and not rule(t[0])
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        rule = next((ok for pat, ok in _COUNT_PHRASES if re.search(pat, p)), None)
        return rule is not None and not rule(int(value))
    day = parse_date(value, now)
    if day is None:
        return False
    if "weekend" in p and day.weekday() < 5:
        return True
    if re.search(r"weekday|during the week", p) and day.weekday() >= 5:
        return True
    if re.search(r"early in the week|start of the week", p) and day.weekday() > 2:  # Monday to Wednesday
        return True
    if now is not None:
        today = now.date()
        if "tomorrow" in p and day != today + timedelta(days=1):
            return True
        if re.search(r"\btoday\b|\btonight\b", p) and day != today:
            return True
        if "this weekend" in p and not 0 <= (day - today).days <= 6:
            return True
        soonest = 1 if "later" in p else 0  # "later this week" is not today
        if re.search(r"this week\b", p) and not ((day - today).days >= soonest and day.isocalendar()[:2] == today.isocalendar()[:2]):
            return True
        if re.search(r"next week\b", p):
            start = today + timedelta(days=7 - today.weekday())
            if not start <= day < start + timedelta(days=7):
                return True
        if "next month" in p and (day.year * 12 + day.month) != (today.year * 12 + today.month + 1):
            return True
        if "next year" in p and day.year != today.year + 1:
            return True
    m = re.search(r"\b(early|mid|middle of|late|end of)\b", p)
    if m and re.search(r"month|year|" + "|".join(_MONTHS), p):
        if "year" in p:
            return {"early": day.month > 4, "late": day.month < 9, "end of": day.month < 10}.get(m.group(1), False)
        where = m.group(1)
        if where == "early" and day.day > 10 or where == "late" and day.day < 20 or where == "end of" and day.day < 21:
            return True
        if where in ("mid", "middle of") and not 10 <= day.day <= 20:
            return True
        named = next((i + 1 for i, name in enumerate(_MONTHS) if name in p), None)
        if named and named != day.month:
            return True
    return False


def has_vague_contradiction(d: Dialogue) -> bool:
    now = reference_now(d)
    return any(
        vague_contradiction(a.detail, d.goal.get(a.slot), now)
        for a in d.ambiguities if a.type == "underspecified_value" and a.slot in d.goal
    )


def has_partial_first_question(d: Dialogue) -> bool:
    """Two or more slots were missing from the start, but the first question asks for only some of them."""
    missing = {a.slot for a in d.ambiguities if a.type == "missing_slot"}
    if len(missing) < 2:
        return False
    first = next((lab for lab in d.labels if lab.act == "clarify"), None)
    return first is None or not missing <= set(first.target_slots)


DETECTORS: dict[str, Callable[[Dialogue], bool]] = {
    "article_error": has_article_error,
    "doubled_word": has_doubled_word,
    "placeholder_value": has_placeholder,
    "python_literal": has_python_literal,
    "count_mismatch": has_count_mismatch,
    "empty_answer": has_empty_answer,
    "pasted_description": has_pasted_description,
    "vague_contradiction": has_vague_contradiction,
    "partial_first_question": has_partial_first_question,
}


def defects(d: Dialogue) -> list[str]:
    """Names of the detectors that flag `d`."""
    return [name for name, fn in DETECTORS.items() if fn(d)]


def distinct_n(texts: Iterable[str], n: int = 2) -> float:
    """Distinct n-grams over all n-grams of lower-cased word tokens (Li et al., 2016).

    >>> distinct_n(["a b a b"], 2)
    0.6666666666666666
    """
    total, seen = 0, set()
    for text in texts:
        words = re.findall(r"[a-z0-9']+", text.lower())
        grams = [tuple(words[i: i + n]) for i in range(len(words) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0
