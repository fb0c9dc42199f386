"""The offline backend's grammar: many phrasings per act, so openings and questions are not a handful of templates.

Every phrase that carries a slot value keeps the value verbatim (grounding checks rely on it; a type said after its
count is in the plural, "4 family rooms", which they read as "family room"), and every
question names its slot with `slot_label` or lists the enum options (question_targets relies on it).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from speakrl.pipeline.checks import normalize, plural, slot_label
from speakrl.schemas.catalog import Domain, SlotSpec, ToolDef
from speakrl.schemas.dialogue import Ambiguity

PERSONAS = [
    "busy professional", "retired teacher", "college student", "parent of three", "frequent traveler",
    "small business owner", "nurse on night shifts", "software engineer", "tourist", "grad student",
    "freelance designer", "sales manager",
]
STYLES = ["terse", "polite", "chatty", "casual"]

# Lead-ins and joins around a request head ("I need a table") and its details.
LEADS = ["", "", "", "", "", "", "", "", "So, ", "Okay, ", "Quick one: ", "Hmm, ", "Right, ", "Um, ", "Alright, ",
         "Well, ", "So ", "Okay so ", "Question: ", "Real quick, ", "Hey, so ", "Alright, so ", "Quick favor: ",
         "Okay, here goes: ", "So here's the thing: ", "Sorry to bother you, but ", "Hoping you can help: ",
         "One thing: ", "Listen, "]
DETAIL_JOINS = ["{head}, {details}.", "{head} — {details}.", "{head}: {details}.", "{head}. It's {details}.",
                "{head}. Here's what I have: {details}.", "{head}, {details} if you can.",
                "{head}. I'm thinking {details}.", "{head}, {details}, please.", "{head}. Details: {details}.",
                "{head}. Make it {details}.", "{head} ({details}).",
                "{head}. My plan: {details}.", "{head} — {details}, if that works.", "{head}. So, {details}.",
                "{head}. The details are {details}.", "{head}. What I need: {details}.", "{head}; {details}.",
                "{head}. For reference, {details}.", "{head}. Basically {details}.", "{head}, and it's {details}.",
                "{head}. Here are the details: {details}.", "{head}. It should be {details}.", "{head}. Here's the info: {details}."]
QUESTION_JOINS = ["{head}? I mean {details}.", "{head} — {details}?",
                  "{head}, {details}?", "{head}? It's {details}.", "{head}? Specifically {details}.",
                  "{head}? That's {details}.", "{head}? For context, {details}.", "{head}? This is {details}.",
                  "{head}? The details: {details}."]
DETAILS_FIRST = ["{details} — {head}.", "{details}: {head}, please.", "So, {details}. {head}."]
DETAILS_FIRST_QUESTIONS = ["{details}: {head}?", "So, {details} — {head}?", "It's {details}. {head}?"]
SECOND_SENTENCES = ["Oh, and {details}.", "Also {details}.", "And {details}.", "Plus {details}.", "Oh, also {details}.",
                    "And it's {details}."]
BARE = ["{head}.", "{head}, please.", "{head}. Can you help?", "{head}!", "{head}, if you don't mind.",
        "{head}. Where do I start?", "{head}. Is that something you can do?", "{head}, if possible.",
        "{head}. What do you need from me?", "{head}. Can we do that?", "{head}, when you get a chance."]
BARE_QUESTIONS = ["{head}?", "{head}? Can you check?", "{head}? Just curious.", "{head}? Let me know.",
                  "{head}? Wondering before I decide.", "{head}? Any idea?", "{head}? I'd like to know."]
GREETINGS = ["Hi!", "Hello.", "Hey there.", "Hi there.", "Hey!", "Hello there!", "Hiya.", "Hey, hope you're well.",
             "Hi, how's it going?", "Greetings.", "Hi, hope your day is going well.", "Hello, quick question.",
             "Hey, hi.", "Hi, thanks for picking this up.", "Hello again.", "Hey, how are you?"]
# Greetings that name a time of day, by the hours they fit (the scenario's "now" is in the system message).
TIMED_GREETINGS = {"Good morning!": range(5, 12), "Morning!": range(5, 12), "Good afternoon.": range(12, 18),
                   "Good evening.": range(18, 23), "Evening!": range(18, 23)}
THANKS = ["Thanks!", "Thank you so much.", "Thanks in advance.", "I appreciate it.", "Thank you!", "Cheers.",
          "Many thanks.", "You're a lifesaver.", "Thanks a bunch.", "Much appreciated.", "That would be great.",
          "Thanks for your help.", "That'd help a lot.", "Thanks, you're the best.", "Really appreciate it.",
          "That would save me a lot of time.", "Thanks so much for this.", "Grateful for the help.",
          "Thanks, really."]
CHATTER = [
    "It's been a long week.", "I keep forgetting to do this.", "My partner asked me to sort it out.",
    "It's kind of a special occasion.", "I'm doing this between meetings.", "First time using this, so bear with me.",
    "I'd rather get it done today.", "A friend recommended you.", "I've been meaning to do this for days.",
    "Hope this is quick.", "Sorry if this is a bit scattered.", "My schedule is a mess this month.",
    "I'm on my phone, so excuse the typos.", "Trying to plan ahead for once.", "My boss needs this sorted.",
    "We're celebrating something.", "I just got back from a trip.", "I'm juggling a lot today.",
    "My sister usually handles this.", "Last time this took forever.", "I'm new in town.", "It's a surprise.",
    "I'm finally getting around to this.",
    "Work has been hectic.", "I'm sorting things out before the holidays.", "My phone is about to die.",
    "Just finished a long shift.", "I forgot to do this yesterday.",
    "My calendar is packed this week.", "This is for my parents.", "We have family visiting soon.",
    "I'm trying to get organized.", "I'm in a bit of a rush.", "Everything else is sorted, this is the last thing.",
    "It's for a work thing.", "Hope I'm doing this right.", "My roommate usually does this.",
    "I'm finally taking some time off.", "My friend swears by this service.",
    "I'm planning a little getaway.", "I should have done this last week.", "Things have been busy at home.",
]
# Chatter that names a time of day, by the hours it fits (as TIMED_GREETINGS).
TIMED_CHATTER = {"Coffee hasn't kicked in yet.": range(5, 11), "I've had a crazy morning.": range(9, 13),
                 "I'm on my lunch break.": range(11, 14), "The kids are asleep, finally.": range(19, 24)}
# Request heads derived from a tool's name, for catalogs without phrasings (imported ones), by the tool's kind.
DERIVED_SEARCH = ["I'm looking for {plural}", "can you find {plural} for me", "find me {plural}", "are there any {plural}",
                  "I need to find {plural}", "help me look for {plural}", "show me some {plural}",
                  "what {plural} are there", "I'm trying to find {plural}", "could you search for {plural}",
                  "do you know any good {plural}", "I'd like to see a few {plural}"]
DERIVED_LOOKUP = ["what's the {thing}", "can you check the {thing}", "I need the {thing}", "tell me the {thing}",
                  "could you look up the {thing}", "I'd like to know the {thing}", "can you find out the {thing}",
                  "do you know the {thing}", "I want to check the {thing}", "what is the {thing} right now"]
DERIVED_ACTION = ["I'd like to {act}", "can you {act} for me", "I need to {act}", "please {act}", "help me {act}",
                  "I want to {act}", "could you {act}", "I'm hoping to {act}", "is it possible to {act}",
                  "I was wondering if you could {act}", "would you {act} for me", "I have to {act}",
                  "I'd love to {act}", "can I {act} through you"]
NOUN_REQUESTS = ["I need {obj}", "I'd like {obj}", "can I get {obj}", "I want {obj}", "I'm after {obj}",
                 "I'm hoping to get {obj}", "could you set me up with {obj}", "I'd love {obj}"]
# A head that says what happened rather than asks ("I can't make my flight", "that event isn't happening anymore"):
# it takes no "please" or "if possible", nor the words of a plan ("My plan:", "I'm thinking"); "we won't make it,
# cancel the booking" asks, after its comma. A cancellation takes no words of a plan either: its details say which
# booking it is ("Undo my hotel reservation. My plan: early April", "Undo my appointment. Make it with Dr. Dahl").
_STATEMENT_HEAD = re.compile(r"^(I can't|I don't|I won't|I'm not|[Ww]e can't|[Ww]e won't|that \w+ isn't)\b[^,]*$")
_PLANS = re.compile(r"My plan|I'm thinking|What I need|Make it")
_ASKING = re.compile(r"please|if possible|if you don't mind|if you can|if that works|when you get a chance|"
                     r"Can we do that|It should be|" + _PLANS.pattern)
_QUESTION_HEAD = re.compile(r"^(what|what's|which|when|where|who|how|is|are|am|can|could|would|will|any|anything|do|does)\b", re.I)
_MASS_OR_PLURAL = re.compile(r"((?<!s)s|tickets|information|info|status|money|music|location|weather|balance|wifi|wi-fi|"
                             r"internet|parking|breakfast|media)$")
# Not "the {label} being {value}": in a list of details it reads as a form ("the book title being Dear Megan",
# "Also, the service being bath").
GENERIC_MENTIONS = ["with {label} {value}", "{value} as the {label}", "{value} for the {label}"]
# How a user states two values for one slot, and which one they lean to (None: no preference): the user's later
# answer follows the lean, so a resolution never contradicts what they said. A phrase never ends on an aside: the
# next detail follows it ("or economy, my friend says and the DL 1478 flight" lacks a comma).
CONFLICT_JOINS = [("{a}, but also {b}", None), ("{a} — though {b} would be better", 1), ("{a}, or actually {b}", 1),
                  ("{a} — or, my friend says, {b}", None), ("ideally {a}, but {b} could work too", 0),
                  ("either {a} or {b}, I can't decide", None)]

Q_MISSING = [
    "Could you tell me the {labels}?", "What {labels} would you like?", "What {labels} should I use?",
    "I'll need the {labels} — what should I put?", "Sure! What's the {labels}?", "Happy to help. What {labels} do you have in mind?",
    "Before I do that, can you tell me the {labels}?", "Got it. Can you give me the {labels}?", "One thing first: the {labels}?",
]
Q_MISSING_WHICH = [  # the label is a thing the value names: "Which doctor do you mean?", never "What's the doctor?"
    "Which {labels} do you mean?", "Which {labels} should I use?", "Happy to help. Which {labels} do you have in mind?",
    "Before I do that, which {labels} do you want?", "One thing first: which {labels}?", "Sure! Which {labels} would you like?",
]
# A cancellation asks for what was booked, not for a choice ("Which hotel would you like?" cancels nothing).
Q_MISSING_BOOKED = [
    "Could you tell me the {labels}?", "Sure, I can cancel that. What's the {labels}?",
    "To find it, could you tell me the {labels}?", "Before I do that, can you tell me the {labels}?",
    "Happy to help. What was the {labels}?", "One thing first: the {labels}?",
]
Q_MISSING_BOOKED_WHICH = [
    "Which {labels} do you mean?", "Sure, I can cancel that. Which {labels} was it?", "To find it, which {labels} was it?",
    "One thing first: which {labels}?", "Happy to help. Which {labels} is it?",
]
# Some missing slots name a thing and others do not: "Which property, and what date and time?", not "Which visit
# time, visit date and property?" ("{rest}": what else is missing, asked with "what" and, for a count, "how many").
Q_MISSING_MIXED = [
    "Which {which} do you mean, and {rest}?", "Sure! Which {which} would you like, and {rest}?",
    "Happy to help. Which {which}, and {rest}?", "One thing first: which {which}, and {rest}?",
    "Before I do that, which {which} do you want, and {rest}?",
]
Q_MISSING_BOOKED_MIXED = [
    "Which {which} was it, and {rest}?", "Sure, I can cancel that. Which {which} was it, and {rest}?",
    "To find it, which {which} was it, and {rest}?",
]
Q_VAGUE = [
    "When you say \"{vague}\", which {which} exactly do you mean?", "Could you narrow \"{vague}\" down to a specific {label}?",
    "\"{vague}\" is a bit open — what {label} should I use?", "Can you be more specific about the {label} than \"{vague}\"?",
    "Which {which} do you mean by \"{vague}\"?",
]
Q_INVALID = [
    "Sorry, \"{bad}\" isn't an option for the {label}. You can choose {options}. Which would you like?",
    "I can't use \"{bad}\" as the {label}; the options are {options}. Which one works?",
    "\"{bad}\" isn't available. For the {label} I can offer {options} — which do you prefer?",
    "The {label} can only be {options}, not \"{bad}\". What should I pick?",
]
Q_CONFLICT = [
    "You mentioned both {a} and {b} for the {label} — which should I go with?",
    "Just to check: {a} or {b} for the {label}?", "Those conflict: {a} versus {b}. Which {which} do you want?",
    "Should the {label} be {a} or {b}?",
]
Q_REFERENCE = [  # "{which}": the label after "which" (`which_label`: "Which event is it?", not "Which event title")
    "I found {n} options: {names}. Which {which} do you mean?", "There are {n} matches — {names}. Which {which} is it?",
    "That could be {names}. Which {which} did you have in mind?", "I see {names}. Which {which} should I use?",
]
A_OPEN = ["{details}.", "Sure — {details}.", "Oh right, {details}.", "{details}, please.", "Let's say {details}.",
          "Good question. {details}.", "It'd be {details}.", "Definitely {details}.",
          "Make it {details}.", "Right, {details}.", "Oh, {details}.",
          "{details}, thanks.", "Let me see: {details}.", "That would be {details}.", "Okay, {details}.",
          "{details}. That's all."]  # no "Yes, ...": what/which questions
# Only a user who left a detail out says they forgot it ("Ah, I forgot: from my savings account" is no reply to
# "can you be more specific than 'my main account'?").
A_FORGOT = ["Ah, I forgot: {details}.", "Oops, {details}.", "Sorry, I should have said: {details}.", "My bad, {details}."]
# Not "Pick {value}.", "Put {value}." or "Use {value}.": nothing was offered to pick from ("Pick November 22nd.", "Put
# family medicine.", "Use today.", "Use Albuquerque.").
A_VALUE = ["{value}.", "{value}, please.", "Let's go with {value}.", "{value} works.", "Hmm, {value}.",
           "I'll take {value}.", "{value}, I think.", "Go with {value}.", "{value} sounds right.",
           "{value} is perfect.", "Make it {value}.", "Definitely {value}.", "Um, {value}.", "{value}, thanks.",
           "Oh, {value}.", "That'd be {value}.", "{value} would be great.", "Just {value}.",
           "I'd say {value}.", "Let's do {value}.", "{value}, if that's okay."]
# Replies by what was asked: picking one of the offered options, pointing at a search result, narrowing a vague phrase.
A_CHOICE = ["Oh, then {value}.", "In that case, {value}.", "Hmm, {value} then.", "{value} is fine.", "Fine, {value}.",
            "Then {value}, please.", "Okay, {value} it is.", "{value} will do.", "Ah, then let's do {value}.",
            "Never mind, {value}.", "{value}, I guess.", "I'll settle for {value}."]
A_POINT = ["I meant {value}.", "{value}, that's the one.", "It's {value}.", "{value}, please.", "The one called {value}.",
           "I was thinking of {value}.", "{value}.", "Go with {value}.", "That's {value}.", "{value} — that one."]
A_NARROW = ["Let's say {value}.", "I mean {value}.", "To be precise, {value}.", "Exactly {value}.", "{value}, specifically.",
            "Make it {value}.", "{value} would be ideal.", "Say {value}.", "{value} is what I had in mind.",
            "Sorry, {value}.", "{value}."]
A_BY_KIND = {"invalid_value": A_CHOICE, "conflicting_constraints": A_CHOICE, "ambiguous_reference": A_POINT,
             "underspecified_value": A_NARROW}
A_VOLUNTEER = [" Oh, and {details}.", " Also, {details}.", " And {details}, if possible.", " Plus {details}.",
               " One more thing: {details}.", " I'd also like it {details}.", " Oh, and make it {details}.",
               " And I forgot to say: {details}.", " Actually, also {details}.", " While we're at it, {details}."]
# Other ways to say a value with a common mention (each keeps the value verbatim and as precise), and what the value
# must be for the variant to fit: a clock time ("at Penn Station sharp", "for The Majestic" are not said) or a place
# ("headed to Leah Abrams", "over in 4DX" are not).
MENTION_VARIANTS: dict[str, list[tuple[str, str | None]]] = {
    "on {value}": [("on {value}", None), ("on {value}", None), ("for {value}", None), ("{value}", None)],
    "at {value}": [("at {value}", None), ("at {value}", None), ("{value}", None), ("for {value}", "clock"),
                   ("at {value} sharp", "clock")],
    "in {value}": [("in {value}", None), ("in {value}", None), ("over in {value}", "place"),
                   ("somewhere in {value}", "place")],
    "to {value}": [("to {value}", None), ("to {value}", None), ("going to {value}", "place"), ("headed to {value}", "place")],
    "from {value}": [("from {value}", None), ("from {value}", None), ("leaving from {value}", "place"),
                     ("out of {value}", "place")],
    "for {value}": [("for {value}", None)],  # not "{value} in total": the "for" slots are dates and names
}
_CLOCK = re.compile(r"^\d{1,2}(:\d{2})?\s*(am|pm)$|^noon$|^midnight$", re.IGNORECASE)
# Words of a slot name that make its value a place.
_PLACE_WORDS = {"city", "destination", "location", "station", "airport", "place", "area", "neighborhood", "address",
                "pickup", "dropoff", "origin", "town", "from", "to", "venue", "branch"}


def _variant_fits(needs: str | None, value: Any, slot: str) -> bool:
    """Whether a mention variant fits the value: a clock time for "sharp", a place for "headed to".

    >>> _variant_fits("clock", "6:30 pm", "time"), _variant_fits("clock", "Penn Station", "pickup_location")
    (True, False)
    >>> _variant_fits("place", "Leah Abrams", "payee_name"), _variant_fits("place", "Denver", "city")
    (False, True)
    """
    if needs == "clock":
        return isinstance(value, str) and bool(_CLOCK.match(value.strip()))
    if needs == "place":
        return bool(set(slot.lower().split("_")) & _PLACE_WORDS) and str(value)[:1].isupper()
    return True


# Ways to string details together, so openings are not one comma list.
DETAIL_LINKS = [", ", ", ", ", ", "; ", ", plus ", ", also ", " — ", ", oh and ", ", and also ", ", and "]
DONE = ["Done!", "All set.", "Great news!", "That's taken care of.", "Confirmed.", "Everything went through."]
# A cancellation says it was cancelled: "All set." and the booking's details alone read as if it had been made.
CANCELLED = ["Done, that's cancelled.", "All set, it's cancelled.", "That's cancelled.", "Your cancellation went through."]


# A unit at the end of a slot name belongs after the value: "weight_kg" is "2 kg", not "weight kg: 2".
_UNITS = {"kg", "lb", "lbs", "km", "mi", "cm", "mm", "minutes", "hours", "days", "usd", "eur"}
# Slots whose name is a bare preposition (SGD's Trains_1 "from" and "to").
_BARE_LABELS = {"from": "origin", "to": "destination"}
_COMPOUND = re.compile(r"\b(check|move|pick|drop|sign|log|walk|carry|take) (in|out|up|off|on)\b(?= \w)")


def _hyphenated(words: str) -> str:
    """A verb and its particle before a noun written as one compound, as in "check-in date".

    >>> _hyphenated("check in date"), _hyphenated("check out")
    ('check-in date', 'check out')
    """
    return _COMPOUND.sub(r"\1-\2", words)


def label(name: str) -> str:
    """How the assistant names a slot in a sentence: `slot_label`, but a unit is said as one ("weight in kg"), "of"
    stays between words ("date of journey", "number of adults"), an X_number keeps its noun ("tracking number") and
    SGD's bare "to"/"from" are the destination and origin.

    >>> label("weight_kg"), label("date_of_journey"), label("tracking_number"), label("to"), label("restaurant_name")
    ('weight in kg', 'date of journey', 'tracking number', 'destination', 'restaurant')
    >>> label("number_stops"), label("number_of_rooms"), label("number_of_days")
    ('number of stops', 'number of rooms', 'number of days')
    >>> label("car_type"), label("ride_id"), label("car_model")
    ('car type', 'ride ID', 'car model')
    >>> label("check_in_date"), label("move_in_date"), label("check_out")
    ('check-in date', 'move-in date', 'check out')
    """
    words = name.lower().split("_")
    if name.lower() in _BARE_LABELS:
        return _BARE_LABELS[name.lower()]
    if "of" in words[1:-1]:  # before the unit: "number_of_days" is "number of days", not "number of in days"
        return " ".join(words)
    if len(words) > 1 and words[-1] in _UNITS:
        return f"{label('_'.join(words[:-1]))} in {words[-1]}"
    if len(words) == 2 and words[1] == "number" and words[0] not in ("flight", "trip"):
        return " ".join(words)
    if len(words) == 2 and words[1] in ("type", "id"):  # "the car" could be car_model or car_type: "car type"
        return f"{words[0]} {'ID' if words[1] == 'id' else 'type'}"
    if len(words) > 1 and words[0] in ("number", "num"):  # SGD's "number_stops": "number of stops"
        return f"number of {label('_'.join(words[1:]))}"
    return _hyphenated(slot_label(name))


def unit_of(name: str) -> str | None:
    """The unit a slot's name ends with ("weight_kg" -> "kg")."""
    last = name.lower().rsplit("_", 1)[-1]
    return last if "_" in name and last in _UNITS else None


def fmt(value: Any) -> Any:
    """A value as a person writes it: 60.0 is "60", True is "yes".

    >>> fmt(60.0), fmt(True), fmt("7 pm")
    (60, 'yes', '7 pm')
    """
    if isinstance(value, bool):
        return "yes" if value else "no"
    return int(value) if isinstance(value, float) and value.is_integer() else value


def money(value: float, grouped: bool = False) -> str:
    """An amount as a price is written: cents only when there are some; `grouped` puts commas in thousands (the
    assistant's closings; a user's amount stays as the call carries it).

    >>> money(40.0), money(24.9), money(7), money(17840.09, grouped=True)
    ('40', '24.90', '7', '17,840.09')
    """
    value = fmt(value)
    if isinstance(value, float):
        return f"{value:,.2f}" if grouped else f"{value:.2f}"
    return f"{value:,}" if grouped else str(value)


def join(items: Sequence[str], word: str = "and") -> str:
    """ "a", "a and b", "a, b and c"."""
    items = [str(i) for i in items]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {word} " + items[-1]


def link(rng: random.Random, items: Sequence[str]) -> str:
    """Details strung together with varied links ("a, b and c", "a; b, plus c")."""
    items = [str(i) for i in items]
    if len(items) <= 1:
        return "".join(items)
    out = items[0]
    for i, item in enumerate(items[1:], 1):
        out += (" and " if i == len(items) - 1 and rng.random() < 0.4 else rng.choice(DETAIL_LINKS)) + item
    return out


# --- language hygiene, in one place ----------------------------------------------------------------------------

_ARTICLE = re.compile(r"\b(a|an|A|An)(\s+)([A-Za-z][\w'-]*)")
# A word said twice, but not inside a name, where both are capitalized ("C C Beauty Salon", "Naya Naya").
_DOUBLED = re.compile(r"\b(?!(?-i:[A-Z][a-z]*\s+[A-Z]))([A-Za-z]+)\s+(\1)\b", re.I)
_SENTENCE_START = re.compile(r"(^|(?<![A-Z])[.!?]\s+)([a-z])")  # not after "M.D.": "Anne Han, M.D. or ..."
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.!?;:])")
_WORD = re.compile(r"[A-Za-z]+", re.I)
# (substrings one of which a match needs, pattern, replacement), applied in order by `tidy`
_AN_NUMBER = (("a 8", "a 1", "A 8", "A 1"), re.compile(r"\b([Aa]) (8|11-|18-|11\b|18\b)"), r"\1n \2")  # "an 18-month lease"
_TIDY_FIXES = [
    (("1 ",), re.compile(r"\b1 ([a-z]{3,}[^s])s\b"), r"1 \1"),  # "1 nights" is "1 night" (but "which one works")
    ((" people",), re.compile(r"\b(1|one) people\b"), r"\1 person"),
    (("on ", "On "), re.compile(r"\b[Oo]n (today|tomorrow|tonight|this|next)\b"), r"\1"),  # not "on today", "on this Friday"
    ((",.", ",!", ",?", ";.", ";!", ";?", ":.", ":!", ":?"), re.compile(r"([,;:])[.!?]"), "."),
]


def _fixed(text: str, guards: tuple[str, ...], pattern: re.Pattern[str], repl: str) -> str:
    # a substring test first: most sentences need none of these fixes, and a pattern that starts with \b is slow to scan
    return pattern.sub(repl, text) if any(g in text for g in guards) else text


def _has_doubled_word(text: str) -> bool:
    """Whether two words in a row are the same word: a cheap test that `_DOUBLED` may match (it is ~9 µs a sentence,
    this ~2): a match is two whole words, so two consecutive `_WORD`s."""
    words = [w.lower() for w in _WORD.findall(text)]
    return any(a == b for a, b in zip(words, words[1:]))


def _fix_article(m: re.Match[str]) -> str:
    from speakrl.pipeline.quality import article_error

    article, space, word = m.groups()
    before = m.string[:m.start()].rstrip()
    if (article[0].isupper() and before and not before.endswith((".", "!", "?"))) or (len(word) == 1 and word.isupper()):
        return m.group(0)  # initials in a name: "Kelly A MD", "A A Aesthetics Dental Care"
    if article_error(word, article):
        article = {"a": "an", "A": "An", "an": "a", "An": "A"}[article]
    return f"{article}{space}{word}"


def tidy(text: str, question: bool = False) -> str:
    """Language hygiene for any generated sentence: the right indefinite article, no doubled words, single spaces,
    sentence case, and a question mark on questions.

    >>> tidy("i found a Audi in hyper class class ,  ok"), tidy("at C C Beauty Salon"), tidy("with A A Dental and Kelly A MD")
    ('I found an Audi in hyper class, ok', 'At C C Beauty Salon', 'With A A Dental and Kelly A MD')
    >>> tidy("Aaron Tward, M.D. or Anne Han, M.D. which one?")
    'Aaron Tward, M.D. or Anne Han, M.D. which one?'
    >>> tidy("which one", question=True)
    'Which one?'
    """
    if _has_doubled_word(text):
        text = _DOUBLED.sub(r"\2", text)  # keep the second: it usually starts a value ("hotel Hotel Marina")
    text = _ARTICLE.sub(_fix_article, text)
    text = _fixed(text, *_AN_NUMBER)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(text.split()))
    for fix in _TIDY_FIXES:
        text = _fixed(text, *fix)
    text = text.replace("..", ".").replace("?.", "?").replace("!.", "!")
    text = _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), text)
    if question and not text.endswith("?"):
        text = text.rstrip(".!") + "?"
    return text


# --- the user's requests ---------------------------------------------------------------------------------------

def intent(tool: ToolDef) -> str:
    """What the tool does, for the assistant's reasoning ("The user wants to ...")."""
    text = tool.description.strip().rstrip(".")
    return text[:1].lower() + text[1:]


def _name_words(tool: ToolDef) -> list[str]:
    return [w for w in re.split(r"[^a-z]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", tool.name).lower()) if w]


def derived_requests(tool: ToolDef) -> list[str]:
    """First-person request heads from a tool's name, for tools without phrasings: "find_groomers" gives
    "I'm looking for groomers", "book_fitness_class" gives "I'd like to book a fitness class".

    >>> derived_requests(ToolDef(name="book_fitness_class", description="", kind="action"))[0]
    "I'd like to book a fitness class"
    >>> derived_requests(ToolDef(name="FindTrains", description="", kind="search"))[0]
    "I'm looking for trains"
    """
    verb, thing = _verb_and_thing(tool)
    if tool.kind == "search" or (tool.kind == "lookup" and verb in ("find", "search", "list")):
        return [t.format(plural=_plural_thing(thing)) for t in DERIVED_SEARCH]
    if tool.kind == "lookup":
        return [t.format(thing=thing) for t in DERIVED_LOOKUP]
    return [t.format(act=task(tool, "my")) for t in DERIVED_ACTION]


def _verb_and_thing(tool: ToolDef) -> tuple[str, str]:
    words = _name_words(tool)
    verb, rest = (words[0], words[1:]) if len(words) > 1 else ("use", words)
    return verb, " ".join(dict.fromkeys(rest))  # SGD's "find_movies_movies": "find movies"


def _plural_thing(thing: str) -> str:
    """ "songs", but "music" and "cars available", not "musics" and "cars availables".

    >>> _plural_thing("song"), _plural_thing("music"), _plural_thing("cars available"), _plural_thing("pharmacy")
    ('songs', 'music', 'cars available', 'pharmacies')
    """
    unchanged = _MASS_OR_PLURAL.search(thing) or re.match(r"\w*[^su]s ", thing)
    return plural(thing) if thing.endswith("bus") or not unchanged else thing


_OWN = ("location", "balance", "account")


def _object(thing: str, own: str) -> str:
    """A noun with the article it takes after a verb: "a ride", "money", "my location" ("your location")."""
    if thing in _OWN:
        return f"{own} {thing}"
    return thing if _MASS_OR_PLURAL.search(thing) else f"{_a(thing)} {thing}"


def _a(word: str) -> str:
    """The indefinite article a word takes: "an event", "a one-way flight"."""
    from speakrl.pipeline.quality import article_error

    return "an" if article_error(word, "a") else "a"


def task(tool: ToolDef, own: str = "your") -> str:
    """What a tool does, from its name, as a short verb phrase: "cancel a ride", "get the hourly forecast",
    "find songs", "add a song to a playlist", "share your location".

    >>> task(ToolDef(name="add_song_to_playlist", description="", kind="action")), task(ToolDef(name="get_air_quality", description="", kind="lookup"))
    ('add a song to a playlist', 'get the air quality')
    """
    verb, thing = _verb_and_thing(tool)
    if tool.kind == "search" or (tool.kind == "lookup" and verb in ("find", "search", "list")):
        return f"{verb} {_plural_thing(thing)}"
    if tool.kind == "lookup":
        return f"{verb} {own if thing in _OWN else 'the'} {thing}"
    parts = re.split(r"\b(to|for|from|on|in|with)\b", thing, maxsplit=1)
    head, prep, tail = (parts[0].strip(), parts[1], parts[2].strip()) if len(parts) == 3 else (thing, "", "")
    if not head:  # "apply_for_lease": the verb takes the preposition
        return f"{verb} {prep} {_object(tail, own)}"
    return f"{verb} {_object(head, own)}" + (f" {prep} {_object(tail, own)}" if prep else "")


_STOP = {"for", "at", "in", "on", "to", "from", "by", "with", "between", "of", "that", "and", "or", "based", "using",
         "via", "into", "when", "if", "given", "which", "who", "where"}
_SPEC_WORDS = {"selected", "specified", "chosen", "particular", "specific", "desired", "requested"}
_POSSESSIVE = {"your": "my", "user's": "my", "the user's": "my", "users'": "my", "their": "my"}


def description_object(tool: ToolDef) -> tuple[str, str] | None:
    """The verb and first noun phrase of a tool's description, in the user's voice: "Send your location to a
    contact" gives ("send", "my location"); "Get the alarms user has already set" gives ("get", "the alarms").

    >>> description_object(ToolDef(name="x", description="Send your location to a contact", kind="action"))
    ('send', 'my location')

    The object stops at three words, so a request holds at most four words of the description in a row.
    """
    words = re.findall(r"[A-Za-z][\w'-]*", tool.description)
    if len(words) < 2:
        return None
    verb, phrase = words[0].lower(), []
    if verb in ("search", "look") and len(words) > 2 and words[1].lower() == "for":  # "Search for available cars"
        words = words[:1] + words[2:]
    for word in words[1:]:
        low = word.lower()
        if phrase in (["list"], ["a", "list"]) and low == "of":  # "Get a list of available times": the times
            phrase = []
            continue
        if low in _STOP or len([w for w in phrase if w not in ("a", "an", "the")]) == 3 or (phrase and low in ("user", "user's", "users")):
            break
        if low in _SPEC_WORDS:  # "Reserve a selected hotel": a user asks for "a hotel"
            continue
        phrase.append(_POSSESSIVE.get(low, low))
    if not phrase or phrase[-1] in ("a", "an", "the", "my", "some", "all"):
        return None
    return verb, " ".join(phrase)


# Verbs whose object is a thing the user gets ("Book a grooming appointment" -> "I need a grooming appointment");
# with others the verb is the request ("Pay a utility bill" is not "I want a utility bill").
_GETTING_VERBS = {"book", "reserve", "schedule", "get", "make", "request", "order", "arrange", "rent", "buy"}


def described_requests(tool: ToolDef) -> list[str]:
    """Request heads from the description's verb and object, rewritten in the first person (never pasted whole)."""
    found = description_object(tool)
    if not found:
        return []
    verb, obj = found
    plural = bool(re.search(r"[^s]s$", obj))
    if tool.kind == "search" or (tool.kind == "lookup" and (plural or re.match(r"an? ", obj)) and verb in ("find", "search", "list")):
        return [] if obj.startswith(("the ", "my ")) else [t.format(plural=obj) for t in DERIVED_SEARCH[:4]]
    if tool.kind == "lookup" or verb in ("get", "check", "show", "fetch", "retrieve", "look"):
        thing = obj if obj.startswith(("the ", "my ")) else "the " + re.sub(r"^an? ", "", obj)  # not "the a bus itinerary"
        heads = DERIVED_LOOKUP[1:5] if plural else DERIVED_LOOKUP[:4]  # not "what's the available times"
        return [t.format(thing=thing.removeprefix("the ")) for t in heads]
    if obj.startswith(("a ", "an ")) and verb in _GETTING_VERBS:  # a thing to get: "I need a grooming appointment"
        return [t.format(obj=obj) for t in NOUN_REQUESTS]
    if not re.match(r"(a|an|the|my|some|all)\b", obj):  # "add an event", not "add event"
        obj = _object(obj, "my")
    return [t.format(act=f"{verb} {obj}") for t in DERIVED_ACTION if "for me" not in t][:4]


def request(rng: random.Random, tool: ToolDef, named: bool = False) -> str:
    """How the user asks for the tool: the catalog's own phrasings, else heads derived from its name and from its
    description's verb and object (never the description pasted). A user who `named` the place does not ask for a
    table "somewhere"."""
    heads = tool.phrasings or [*derived_requests(tool), *described_requests(tool)]
    if named:
        heads = [h for h in heads if "somewhere" not in h] or heads
    return rng.choice(heads)


_MONEY_WORDS = {"amount", "price", "fare", "cost", "total", "fee", "balance", "budget", "rent", "payment"}


def _says_no(slot: SlotSpec, value: Any) -> bool:
    """Whether `mention` says this value as "no <slot>" rather than verbatim: a closed-set slot's "none"."""
    return bool(slot.mention) and isinstance(value, str) and normalize(value) == "none"


def no_value(name: str) -> str:
    """How a user says a closed-set slot's "none": "no reminder", "no insurance"."""
    return f"no {label(name)}"


def aliases(domain: Domain, values: dict[str, Any]) -> dict[str, list[str]]:
    """The words `mention` says some of `values` in instead of the value itself, as `Dialogue.aliases` (value ->
    words), so grounding accepts them: "no reminder" for reminder="none"."""
    said = [no_value(name) for name, value in values.items() if _says_no(domain.slot(name), value)]
    return {"none": said} if said else {}


def mention(rng: random.Random | None, domain: Domain, name: str, value: Any, answer: bool = False) -> str:
    """How a user says a slot's value; the value itself stays verbatim. An `answer` to a question about the slot
    says it without "the X being"."""
    slot = domain.slot(name)
    said = label(name)
    if isinstance(value, bool):
        words = said.split(" ")
        if "for" in name.lower().split("_"):  # "good_for_kids": "not good for kids", not "without good kids"
            full = name.lower().replace("_", " ")
            return full if value else f"not {full}"
        if len(words) > 1 and words[-1] in _GRANTED:  # "pets allowed", "no pets allowed" (not "not pets allowed")
            return said if value else f"no {said}"
        if said.endswith(("ed", "able", "ible")):  # "insured", "refundable"
            return said if value else f"not {said}"
        if words[0] in ("is", "has") and len(words) > 1:  # "is_unisex": "unisex"; "has_wifi": "with wifi"
            rest = " ".join(words[1:])
            return (rest if value else f"not {rest}") if words[0] == "is" else f"{'with' if value else 'without'} {rest}"
        fact = _bool_fact(name, value)
        if fact.startswith("it ") and not fact.startswith(("it is", "it has")):  # a verb
            return "that" + fact[2:]  # "that offers cosmetic services", not "with offers cosmetic services"
        return f"with {said}" if value else f"without {said}"
    if answer and isinstance(value, str) and names_an_entity(name):  # "Which hotel?": "The Whitmore", not "at The Whitmore"
        return value
    if _says_no(slot, value):  # not "with none insurance" or "reminder set to none"
        return no_value(name)
    if slot.mention:
        own = slot.mentions_for.get(str(value))  # a value the slot's templates do not fit: its own
        template = own[0] if own else slot.mention
        if rng is not None and (own or slot.mentions):
            options = own or [template, *slot.mentions]
            if answer:  # a reply is a phrase, not an infinitive: not "Oops, to move in on May 2nd."
                options = [o for o in options if not _INFINITIVE.match(o)] or options
                if _COUNTED_THING.fullmatch(template):  # nor a thing counted without "a": "Make it phone call."
                    options = [o for o in options if o != "{value}"] or options
            template = rng.choice(options)
        if rng is not None and template in MENTION_VARIANTS:
            template = rng.choice([t for t, needs in MENTION_VARIANTS[template] if _variant_fits(needs, value, name)])
        if isinstance(value, str) and _SAYS_WHEN.match(value):  # "now", "in 15 minutes": not "at now", "at in 15 ..."
            template = _PREPOSITION.sub("", template)
        if isinstance(value, str) and _STREET_ADDRESS.match(value) and template.endswith("in {value}"):
            template = "at {value}"  # a street address: "at 559 Brooks Pass", not "in" or "somewhere in" it
        if isinstance(value, str) and _PLURAL_END.search(value):  # "for new symptoms", not "for a new symptoms"
            template = re.sub(r"\ban? (?=\{value\}$)", "", template)
        money_value = isinstance(value, float) and "${value}" in template
        return template.format(value=money(value) if money_value else fmt(value))  # "$8.50", not "$8.5"
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if numeric and (unit := unit_of(name)):  # "2 kg", "a weight of 2 kg"
        base = label(name).rsplit(" in ", 1)[0]
        forms = [f"{{value}} {unit}", f"{{value}} {unit}", f"a {base} of {{value}} {unit}"]
        return (forms[0] if rng is None else rng.choice(forms)).format(value=fmt(value))
    if numeric and set(name.lower().split("_")) & _MONEY_WORDS:  # "$40", "$24.90"
        forms = ["${value}", "${value}", "a {label} of ${value}"]
        return (forms[0] if rng is None else rng.choice(forms)).format(label=said, value=money(value))
    kind = name.lower().rsplit("_", 1)[-1]
    if "_" in name and kind in ("type", "category", "kind") and not said.endswith(kind):  # "with event type Music"
        said = f"{said} {kind}"
    if said.rsplit(" ", 1)[-1] in _TRAILING_PREPOSITIONS:  # "directed by Alfred Hitchcock"
        return f"{said} {fmt(value)}"
    # "with author Ann Lee" reads; "with format ebook" or "with utility cable TV" does not
    mentions = GENERIC_MENTIONS[1:] if slot.enum else GENERIC_MENTIONS
    if rng is None:
        template = mentions[0]
    elif isinstance(value, str) and not value.replace(".", "").isdigit() and not _names_other(name, domain.entity_slot) \
            and (answer or not slot.enum) and rng.random() < 0.5:
        template = "{value}"  # a name, address or e-mail says what it is; an option ("cat") does only when asked for
    else:
        template = rng.choice(mentions)
    return template.format(label=said, value=fmt(value))


def mentions(rng: random.Random | None, domain: Domain, values: dict[str, Any], answer: bool = False) -> list[str]:
    """How a user says several values, each by `mention`; a count is said with the type of what it counts ("4 family
    rooms", not "4 rooms total and a family room"; `_counted`), which the grounding check reads as both."""
    counted = _counted(values)
    return [counted.get(k) or mention(rng, domain, k, v, answer) for k, v in values.items() if k not in _typed(counted)]


def _names_other(name: str, entity_slot: str | None) -> bool:
    """Whether a slot holds the name of someone or something other than the domain's entity (pet_name next to a
    groomer_name): said alone, "Amanda" could be anyone ("rabbit as the species, Amanda").

    >>> _names_other("pet_name", "groomer_name"), _names_other("groomer_name", "groomer_name"), _names_other("city", None)
    (True, False, False)
    """
    return name.lower().endswith("_name") and name != entity_slot


# A value whose last word is a plural ("new symptoms"), which takes no "a"; not "bus", "class" or "status".
_PLURAL_END = re.compile(r"\b[a-z]+[^sui'\W]s$")
_COUNTED_THING = re.compile(r"(as )?an? \{value\}")  # a slot said "a {value}" holds things counted one by one
_INFINITIVE = re.compile(r"^to (?!my\b|the\b|\{)[a-z]+ ")  # "to see {value}", not "to {value}" or "to my {value} playlist"
_STREET_ADDRESS = re.compile(r"^\d+[A-Za-z]? [A-Z]")  # "559 Brooks Pass", "12B Elm Street"; not "15 minutes", "2 people"
_SAYS_WHEN = re.compile(r"^(now|right now|today|tonight|tomorrow|in \d|this |next |later)", re.I)
_LEADS_A_PHRASE = re.compile(r"^(in|from|at|on|with|for|by|to|called|rated|starting|leaving|arriving|moving|checking) ")


def reference_detail(domain: Domain, search_args: dict[str, Any]) -> str:
    """How the user refers to an entity without naming it: "the restaurant in Fremont, Vietnamese food"; what is
    not a phrase of its own ("some jazz") follows the ones that are ("the song from the 2010s, some jazz")."""
    entity = domain.entity or label(domain.entity_slot or "one")
    said = [mention(None, domain, k, v) for k, v in search_args.items()]
    after = [m for m in said if _LEADS_A_PHRASE.match(m)]
    rest = [m for m in said if not _LEADS_A_PHRASE.match(m)]
    text = f"the {entity} " + join(after) + (", " if after and rest else "") + join(rest)
    text = tidy(text)
    return text[:1].lower() + text[1:]  # said inside a sentence


_PEOPLE_WORDS = {"party", "passengers", "people", "guests", "adults", "travelers", "riders", "group", "attendees"}


def _count_phrases(n: int) -> list[str]:
    if n == 1:
        return ["just me", "only me, I think", "just myself"]
    if n == 2:
        return ["a couple of us", "me and my partner", "me and a friend"]
    phrases = ["a few of us", "me and a few friends"] if n <= 5 else []
    phrases += ["a small group"] if n <= 6 else []
    return phrases + ["me and the kids", "the whole family", "a group of us"]


def _time_phrases(hour: int) -> list[str]:
    """How a user says a time of day vaguely.

    >>> _time_phrases(20), _time_phrases(22)[0]
    (['late in the evening', 'later in the evening'], 'late at night')
    """
    if hour < 9:
        return ["early in the morning", "first thing in the morning"]
    if hour < 11:
        return ["in the morning", "sometime in the morning", "before lunch"]
    if hour < 12:
        return ["late in the morning", "before noon"]
    if hour < 14:
        return ["around lunchtime", "around midday"]
    if hour < 17:
        return ["in the afternoon", "sometime in the afternoon", "after lunch"]
    if hour < 20:
        return ["in the evening", "after work", "around dinnertime"]
    if hour < 22:  # 8 pm is late in the evening, not late at night
        return ["late in the evening", "later in the evening"]
    return ["late at night", "late in the evening"]


def _date_phrases(day: date, today: date) -> list[str]:
    month = day.strftime("%B")
    diff = (day - today).days
    if diff in (0, 1):  # "today" and "tomorrow" name one day: nothing to clarify
        return []
    week_start = today + timedelta(days=7 - today.weekday())
    if day.weekday() >= 5 and diff <= 6:
        return ["this weekend", "sometime this weekend"]
    if week_start <= day < week_start + timedelta(days=7):
        return ["next weekend"] if day.weekday() >= 5 else ["sometime next week", "one day next week"]
    part = "early" if day.day <= 10 else "mid" if day.day <= 20 else "late"
    phrases = {"early": [f"early {month}", f"the first days of {month}"], "mid": [f"mid-{month}", f"the middle of {month}"],
               "late": [f"late {month}", f"the end of {month}"]}[part]
    if (day.year * 12 + day.month) == (today.year * 12 + today.month + 1):
        phrases.append(f"{part} next month" if part != "mid" else "the middle of next month")
    phrases.append(f"a {'weekend' if day.weekday() >= 5 else 'weekday'} in {month}")
    return phrases


def derived_vague(slot: SlotSpec, value: Any, now: datetime | None) -> list[str]:
    """Vague phrases drawn from the hidden value itself, so the resolution can never contradict them: an
    afternoon time gives "in the afternoon", a Saturday within the week "this weekend", a party of 4 "a few of us".

    >>> derived_vague(SlotSpec(name="time", description=""), "3:15 pm", None)[0]
    'in the afternoon'
    >>> derived_vague(SlotSpec(name="party_size", description="", type="integer"), 2, None)[0]
    'a couple of us'
    """
    from speakrl.pipeline.quality import parse_date, parse_time

    t = parse_time(value) if isinstance(value, str) else None
    if t is not None:
        return _time_phrases(t[0])
    if isinstance(value, int) and not isinstance(value, bool):
        return _count_phrases(value) if set(slot.name.split("_")) & _PEOPLE_WORDS and value > 0 else []
    day = parse_date(value, now) if isinstance(value, str) and now is not None else None
    return _date_phrases(day, now.date()) if day else []


def vague_phrases(slot: SlotSpec, value: Any, now: datetime | None) -> list[str]:
    """Every vague way to say `value`: derived from it, the catalog's phrases for that value, and the slot's
    generic phrases that it does not contradict."""
    from speakrl.pipeline.quality import vague_contradiction

    generic = [p for p in slot.vague if not vague_contradiction(p, value, now)]
    return [*derived_vague(slot, value, now), *slot.vague_for.get(str(value), []), *generic]


_CLAUSE = re.compile(r"the [\w ]+ (is|are) \{value\}$")  # a mention that is a clause: "the reason is {value}"


def conflict_phrase(rng: random.Random, domain: Domain, slot: str, goal_value: Any, other: Any) -> str:
    """Two values for one slot; when the template leans to one, the goal value is the one leaned to."""
    template, lean = rng.choice(CONFLICT_JOINS)
    pair = [goal_value, other]
    if lean is None:
        rng.shuffle(pair)
    elif lean == 1:
        pair.reverse()
    # options of a slot with no phrasing of its own are said bare ("express — though standard would be better"), and
    # so is the second of a slot said as a clause ("the reason is other, or actually plans changed")
    a, b = (mention(rng, domain, slot, v) if domain.slot(slot).mention else str(fmt(v)) for v in pair)
    if _CLAUSE.match(domain.slot(slot).mention or ""):
        b = str(fmt(pair[1]))
    raw = template.format(a=a, b=b)
    return raw[:1] + tidy(raw)[1:]  # said inside a sentence: "express, ..." stays lower, "Air Canada, ..." upper


# Lead-ins that take a noun phrase ("It's 4 people", "Make it a suite"), not a verb phrase or a clause ("Basically
# called Interview with Casey", "Make it checking in on May 2nd", "It's to see Dr. Rao", "I'd also like it the reason
# is plans changed", "For context, titled Budget kickoff"); and "For reference," is not followed by "for".
_NOUN_LEAD = re.compile(r"\b(It's|it's|Basically|I'm thinking|Make it|make it|It should be|That's|This is|Specifically|"
                        r"It'd be|Definitely|That would be|Let's say|The details are|I'd also like it|For reference,|"
                        r"For context,) \{details\}")
# "I'd also like it" takes how it should be ("in kelvin", "for 4 people"), not a thing ("I'd also like it the 15th",
# "I'd also like it 5 seats"); "I'm thinking" takes a thing the user has in mind ("I'm thinking a suite"), not where
# or when a fact is ("I'm thinking on the toaster", "I'm thinking from Boston") nor a number, a code or an e-mail.
_PREPOSITION_LEAD = re.compile(r"(in|on|at|for|with|without|by|from|to|over|around|out of|somewhere)\b")
_NOT_IN_MIND = re.compile(_PREPOSITION_LEAD.pattern + r"|[(\d$]|[^ ,]+@")
# Lead-ins that sum up a list: "Basically at Juniper Heights." or "Here are the details: at 7 pm." says one detail.
_SUMS_UP = re.compile(r"Basically|[Dd]etails:|The details are|Here are the details|Here's the info|Here's what I have|My plan")
# A question's head takes after a comma or dash what qualifies it ("what cars can I rent, at LAX Airport?"), not a bare
# name ("what cars can I rent, LAX Airport?", "what's a restaurant rated, Sakura Garden?").
_APPOSED = re.compile(r"\{head\}(,| —) \{details\}\?")
_MODIFIES = re.compile(_PREPOSITION_LEAD.pattern + r"|(this|next|today|tomorrow|tonight|sometime|ideally|either|"
                       r"(?!\w*thing\b)[a-z]+ing)\b")
_AT_A_NAME = re.compile(r"(at|with) [A-Z]")
_VERB_PHRASE = re.compile(r"(called|named|titled|marked|lasting|done|as an?|to (?!my\b|the\b)[a-z]+|"
                          r"(?!(some|any|no|every)thing\b|during\b)[a-z]+ing|((ideally|either) )?the \w+ (is|are))\b")


def fits(template: str, details: str, one: bool = False) -> bool:
    """Whether `details` (`one` detail alone, or several) reads after the words the template puts before it.

    >>> fits("{head}. Basically {details}.", "called Interview with Casey"), fits("{head}, {details}.", "called Interview")
    (False, True)
    >>> fits("{head}. Basically {details}.", "for 2 people"), fits("{head}. For reference, {details}.", "for August 16th")
    (True, False)
    >>> fits(" I'd also like it {details}.", "the reason is plans changed"), fits(" I'd also like it {details}.", "in kelvin")
    (False, True)
    >>> fits(" I'd also like it {details}.", "the 15th"), fits("{head}. I'm thinking {details}.", "on the toaster")
    (False, False)
    >>> fits("{head}. I'm thinking {details}.", "a suite"), fits("{head}. Basically {details}.", "at Juniper Heights", one=True)
    (True, False)
    >>> fits("{head}, {details}?", "LAX Airport"), fits("{head}, {details}?", "at LAX Airport, leaving June 13th")
    (False, True)
    >>> fits("{head}? For context, {details}.", "titled Budget kickoff"), fits("{head}. For reference, {details}.", "Dr. Rao")
    (False, True)
    >>> fits("{head}. It should be {details}.", "ideally the reason is driver too far, but other could work too")
    False
    >>> fits("It'd be {details}.", "as an in-person visit"), fits("Right, {details}.", "as an in-person visit")
    (False, True)
    """
    if _VERB_PHRASE.match(details) and _NOUN_LEAD.search(template):
        return False
    if "I'd also like it {details}" in template and not _PREPOSITION_LEAD.match(details):
        return False
    if "I'm thinking {details}" in template and _NOT_IN_MIND.match(details):
        return False
    if one and _SUMS_UP.search(template):
        return False
    if _APPOSED.search(template) and not _MODIFIES.match(details):
        return False
    if "I mean {details}" in template and _AT_A_NAME.match(details):  # "a restaurant? I mean The Copper Pot", no "at"
        return False
    return not (details.startswith("for ") and "For reference, {details}" in template)


def choose(rng: random.Random, templates: Sequence[str], details: str, one: bool = False) -> str:
    """One of `templates` that `fits` the details (any of them if none does)."""
    return rng.choice([t for t in templates if fits(t, details, one)] or templates)


def _told(templates: list[str], head: str, tool: ToolDef | None = None) -> list[str]:
    """The `templates` that fit `head` and its `tool`: after a statement, none that asks or plans ("I can't make my
    flight, please", "I'm not flying after all. My plan: on flight UA 1549"); after a "please", none that says it again
    ("please cancel my tickets, please"); for a cancellation, none that plans.

    >>> _told(["{head}.", "{head}, please."], "I can't make my flight"), _told(["{head}, please."], "book me a table")
    (['{head}.'], ['{head}, please.'])
    >>> _told(["{head}.", "{head}, please."], "please cancel my tickets")
    ['{head}.']
    >>> cancel = ToolDef(name="cancel_booking", description="", kind="action")
    >>> _told(["{head}. My plan: {details}.", "{head}, {details}."], "undo my booking", cancel)
    ['{head}, {details}.']
    >>> _told(["{head}. My plan: {details}.", "{head}, {details}."], "book me a table")
    ['{head}. My plan: {details}.', '{head}, {details}.']
    """
    if cancels(tool):
        templates = [t for t in templates if not _PLANS.search(t)] or templates
    if _STATEMENT_HEAD.match(head):
        return [t for t in templates if not _ASKING.search(t)] or templates
    if "please" in head.lower():
        return [t for t in templates if "please" not in t] or templates
    return templates


def opening(rng: random.Random, domain: Domain, tool: ToolDef, stated: dict[str, Any], ambiguities: list[Ambiguity],
            search_args: dict[str, Any], goal: dict[str, Any] | None = None) -> str:
    """The user's first message: a request head, the stated values, and whatever stands in for the ambiguous ones
    (for an ambiguous reference, the description that a search needs)."""
    details = [a.detail for a in ambiguities if a.type == "ambiguous_reference"]
    details += mentions(rng, domain, {k: v for k, v in stated.items() if k not in search_args})
    for amb in ambiguities:
        if amb.type == "underspecified_value":
            details.append(amb.detail)
        elif amb.type == "invalid_value":
            details.append(mention(rng, domain, amb.slot, amb.detail))
        elif amb.type == "conflicting_constraints":
            details.append(amb.detail)
    rng.shuffle(details)
    head = request(rng, tool, named=domain.entity_slot in stated)
    asks = bool(_QUESTION_HEAD.match(head))
    if not details:
        return rng.choice(LEADS) + rng.choice(BARE_QUESTIONS if asks else _told(BARE, head, tool)).format(head=head)
    if len(details) >= 3 and rng.random() < 0.25:  # the rest in a second sentence: "..., for 4 people. Oh, and at 7 pm."
        cut = rng.randint(1, len(details) - 1)
        said = link(rng, details[cut:])
        rest = choose(rng, SECOND_SENTENCES, said).format(details=said)
        details = details[:cut]
    else:
        rest = ""
    if rng.random() < 0.15:  # the details first, with no lead-in: "On March 3rd, for 4 people: I need a table."
        said = link(rng, details)
        templates = DETAILS_FIRST_QUESTIONS if asks else _told(DETAILS_FIRST, head, tool)
        text = choose(rng, templates, said, len(details) == 1).format(head=head, details=said)
        return text + (" " + rest if rest else "")
    else:
        said = link(rng, details)
        templates = QUESTION_JOINS if asks else _told(DETAIL_JOINS, head, tool)
        text = choose(rng, templates, said, len(details) == 1).format(head=head, details=said)
    leads = [lead for lead in LEADS if ":" not in lead] if ":" in text else LEADS  # not "Quick one: ...: ..."
    if re.search(r"\bSo\b", text):  # not "So show me my payees. So, my family member."
        leads = [lead for lead in leads if not re.search(r"(?i)\bso\b", lead)]
    return rng.choice(leads) + text + (" " + rest if rest else "")


def persona(rng: random.Random) -> tuple[str, str]:
    return rng.choice(PERSONAS), rng.choice(STYLES)


def greetings(hour: int | None) -> list[str]:
    """The greetings that fit the hour: no "Good morning!" at 5:40 pm.

    >>> "Good morning!" in greetings(9), "Good morning!" in greetings(17), "Good afternoon." in greetings(15)
    (True, False, True)
    """
    return GREETINGS + [g for g, hours in TIMED_GREETINGS.items() if hour is not None and hour in hours]


def chatter(hour: int | None) -> list[str]:
    """The small talk that fits the hour: no "Coffee hasn't kicked in yet." at 4:20 pm.

    >>> "Coffee hasn't kicked in yet." in chatter(8), "Coffee hasn't kicked in yet." in chatter(16)
    (True, False)
    """
    return CHATTER + [c for c, hours in TIMED_CHATTER.items() if hour is not None and hour in hours]


def styled(rng: random.Random, text: str, style: str, hour: int | None = None) -> str:
    """Wrap a message in the user's style; `hour` is the scenario's time of day, for greetings that name it."""
    if style in ("polite", "chatty") and text.startswith("Hey, so "):  # greeted once: not "Hi there. Hey, so ..."
        text = "So " + text[len("Hey, so "):]
    if style == "polite":
        greeting = unechoed(rng, greetings(hour), text)
        # "That would be great." thanks for a request; after a question ("Where do I start?") it does not read
        thanks = [t for t in THANKS if not t.startswith("That")] if text.endswith("?") else THANKS
        text = f"{greeting} {text} {unechoed(rng, thanks, greeting, text)}"
    elif style == "chatty":
        text = f"{unechoed(rng, greetings(hour), text)} {rng.choice(chatter(hour))} {text}"
    return tidy(text)


_ECHO = re.compile(r"\b(quick|thank)", re.I)


def unechoed(rng: random.Random, options: list[str], *said: str) -> str:
    """One of `options` that does not say again what is said ("Hello, quick question. Real quick, ...", or thanks
    twice); any of them if none fits.

    >>> unechoed(random.Random(0), ["Hello, quick question.", "Hi!"], "Real quick, book a table.")
    'Hi!'
    """
    echoes = {w.lower() for text in said for w in _ECHO.findall(text)}
    fresh = [o for o in options if not echoes & {w.lower() for w in _ECHO.findall(o)}]
    return rng.choice(fresh or options)


# --- the assistant's questions ---------------------------------------------------------------------------------

def question_missing(rng: random.Random, names: list[str], counts: Iterable[str] = (),
                     tool: ToolDef | None = None) -> str:
    """A question for the missing slots `names` of `tool`; a count among them (`counts`) is asked for its number ("the
    number of travelers", not "the travelers"), and a cancellation asks what was booked.

    >>> question_missing(random.Random(0), ["travelers", "travel_date"], counts=["travelers"])
    'Before I do that, can you tell me the number of travelers and travel date?'
    >>> question_missing(random.Random(1), ["hotel_name"], tool=ToolDef(name="cancel_hotel", description="", kind="action"))
    'Sure, I can cancel that. Which hotel was it?'
    """
    entities = [n for n in names if names_an_entity(n)]
    if entities and len(entities) < len(names):
        templates = Q_MISSING_BOOKED_MIXED if cancels(tool) else Q_MISSING_MIXED
        which, rest = _which_and_rest(names, entities, counts, "what was the" if cancels(tool) else "what")
        return tidy(rng.choice(templates).format(which=which, rest=rest), question=True)
    if cancels(tool):
        templates = Q_MISSING_BOOKED_WHICH if entities else Q_MISSING_BOOKED
    else:
        templates = Q_MISSING_WHICH if entities else Q_MISSING
    return tidy(rng.choice(templates).format(labels=missing_labels(names, counts, bool(entities))), question=True)


def _which_and_rest(names: list[str], entities: list[str], counts: Iterable[str], what: str) -> tuple[str, str]:
    """The things asked for with "which", and the rest of the missing slots asked with `what` ("what date") and, for
    a count, "how many" ("how many tickets"); a label drops a word said before it, as in `missing_labels`.

    >>> _which_and_rest(["tickets", "event_name", "event_date"], ["event_name"], ["tickets"], "what")
    ('event', 'what date and how many tickets')
    >>> _which_and_rest(["visit_time", "property_name", "visit_date"], ["property_name"], [], "what")
    ('property', 'what visit time and visit date')
    """
    said = _said_labels(names, counts, {n: which_label(n) if n in entities else label(n) for n in names})
    counted = {n: s.removeprefix("number of ") for n, s in said if n in counts and s.startswith("number of ")}
    others = [s for n, s in said if n not in entities and n not in counted]
    asks = [f"{what} {join(others)}"] * bool(others) + [f"how many {c}" for c in counted.values()]
    return join([s for n, s in said if n in entities]), join(asks)


def cancels(tool: ToolDef | None) -> bool:
    """Whether a tool cancels something already booked."""
    return tool is not None and tool.name.lower().startswith("cancel")


def names_an_entity(name: str) -> bool:
    """Whether a slot's label is the thing its value names ("doctor" for doctor_name, "flight" for flight_number):
    the assistant asks which one, not for "the doctor".

    >>> names_an_entity("doctor_name"), names_an_entity("flight_number"), names_an_entity("movie_title")
    (True, True, False)
    """
    words = name.lower().split("_")
    return len(words) > 1 and words[-1] in ("name", "number") and label(name) == " ".join(words[:-1])


def missing_labels(names: list[str], counts: Iterable[str] = (), which: bool = False) -> str:
    """How the assistant names the missing slots `names` (`question_missing`), in its question and its
    reasoning (`which`: after "which", where a title is its thing, `which_label`). A label that starts with another
    one said before it drops the word said ("the recipient and address", not "the recipient and recipient address").

    >>> missing_labels(["travelers", "amount"], counts=["travelers", "amount"])
    'number of travelers and amount'
    >>> missing_labels(["recipient_address", "weight_kg", "recipient_name"]), missing_labels(["song_title"], which=True)
    ('recipient, address and weight in kg', 'song')
    """
    return join([s for _, s in _said_labels(names, counts, {n: which_label(n) if which else label(n) for n in names})])


def _said_labels(names: list[str], counts: Iterable[str], said: dict[str, str]) -> list[tuple[str, str]]:
    """(slot, how it is named) for `missing_labels`, a label's head first and dropped from the labels after it."""
    ordered: list[str] = []
    for n in names:  # a label's head first: "recipient, address", never "address ... recipient"
        head = next((m for m in names if said[n].startswith(said[m] + " ")), None)
        ordered += [m for m in (head, n) if m and m not in ordered]
    for n in ordered:
        head = next((m for m in ordered if said[n].startswith(said[m] + " ")), None)
        if head:
            said[n] = said[n][len(said[head]) + 1:]
    return [(n, f"number of {said[n]}" if n in counts and _count_noun(said[n]) else said[n]) for n in ordered]


def which_label(name: str) -> str:
    """`label` after "which": a title is asked for by the thing it names.

    >>> which_label("event_title"), which_label("book_title"), which_label("new_title"), which_label("doctor_name")
    ('event', 'book', 'new title', 'doctor')
    """
    words = name.lower().split("_")
    if len(words) == 2 and words[1] == "title" and words[0] not in ("new", "old", "current", "original"):
        return words[0]
    return label(name)


def _count_noun(noun: str) -> bool:
    """Whether a slot's label is one plural noun, whose value is a count of it ("travelers", not "amount")."""
    return " " not in noun and noun.endswith("s") and not noun.endswith("ss")


Q_VAGUE_COUNT = [  # not "how many": question_targets reads it as any *_number slot too ("trip number")
    "When you say \"{vague}\", what's the exact number of {label}?",
    "Could you give me the exact number of {label} for \"{vague}\"?",
    "\"{vague}\" is a bit open — what number of {label} should I put?",
]


def question_vague(rng: random.Random, name: str, vague: str, count: bool = False, tool: ToolDef | None = None) -> str:
    """A question that asks to narrow `vague`; a count is asked for its number (not "which tickets")."""
    said = label(name)
    count = count and _count_noun(said)  # "the exact number of nights", but not "the exact number of amount"
    templates = _booked(Q_VAGUE_COUNT if count else Q_VAGUE, tool)
    return tidy(rng.choice(templates).format(vague=vague, label=said, which=which_label(name)), question=True)


# How a question offers a choice: a cancellation asks what was booked ("Which hotel is it?"), not "Which hotel should
# I use?" (the options of an enum, as a cancel reason, are still a choice).
_CHOOSES = re.compile(r"should I (use|put)|would you like|do you want|do you have in mind")


def _booked(templates: list[str], tool: ToolDef | None) -> list[str]:
    """The `templates` that fit a question about `tool`: for a cancellation, those not offering a choice."""
    if not cancels(tool):
        return templates
    return [t for t in templates if not _CHOOSES.search(t)] or templates


def question_invalid(rng: random.Random, name: str, bad: str, options: list[str]) -> str:
    return tidy(rng.choice(Q_INVALID).format(bad=bad, label=label(name), options=join(options, "or")), question=True)


def question_conflict(rng: random.Random, name: str, a: str, b: str) -> str:
    return tidy(rng.choice(Q_CONFLICT).format(a=a, b=b, label=label(name), which=which_label(name)), question=True)


def question_reference(rng: random.Random, name: str, candidates: list[str], tool: ToolDef | None = None) -> str:
    return tidy(rng.choice(_booked(Q_REFERENCE, tool)).format(n=len(candidates), names=join(candidates, "or"),
                                                              which=which_label(name)), question=True)


def _said_alone(domain: Domain, name: str, value: Any) -> str:
    """A value as a one-word reply says it: "2 kg", "$40", "a deluxe room" (a thing counted, whose slot says it with
    "a": not "I'll take deluxe room"), else the value itself."""
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    slot = domain.slot(name)
    if numeric and (unit_of(name) or set(name.lower().split("_")) & _MONEY_WORDS) and not slot.mention:
        return mention(None, domain, name, value)
    said_as = slot.mentions_for.get(str(value)) or [slot.mention or ""]
    if isinstance(value, str) and _COUNTED_THING.fullmatch(said_as[0]) and not _PLURAL_END.search(value):
        return f"a {value}"  # "an" where it is due: the reply is tidied
    return str(fmt(value))


def _just_counts(templates: list[str], said: str) -> list[str]:
    """The reply `templates` that fit `said`: "Just" plays down an amount ("Just 2 kg.", "Just for 4 nights."), not a
    name or a place ("Just at Luna Trattoria.", "Just family member.").

    >>> _just_counts(["{m}.", "Just {m}."], "for 4 nights"), _just_counts(["{m}.", "Just {m}."], "at Luna Trattoria")
    (['{m}.', 'Just {m}.'], ['{m}.'])
    """
    if re.match(r"(for )?\$?\d", said):
        return templates
    return [t for t in templates if not t.startswith("Just ")]


def user_answer(rng: random.Random, domain: Domain, answers: dict[str, Any], volunteered: dict[str, Any],
                kind: str = "missing_slot") -> str:
    """The user's reply to a question of `kind` about the slots in `answers`: the bare value or a fragment ("For 4
    nights."), in the words that fit what was asked ("Oh, then coach." after the options)."""
    single = next(iter(answers.items())) if len(answers) == 1 else None
    # The one slot asked about, said without a label of its own ("Full groom.", not "Full groom as the service."):
    # only a slot's own way of saying it adds anything ("For 4 nights.")
    bare = single is not None and not isinstance(single[1], bool) and not domain.slot(single[0]).mention
    if single and not isinstance(single[1], bool) and rng.random() < 0.6:
        if kind in A_BY_KIND and rng.random() < 0.7:
            text = rng.choice(A_BY_KIND[kind]).format(value=_said_alone(domain, *single))
        elif rng.random() < 0.3:  # a fragment: "For 4 nights.", "On Sunday."
            said = _said_alone(domain, *single) if bare else mention(rng, domain, *single, answer=True)
            fragments = ["{m}.", "{m}, please.", "Oh, {m}.", "{m}, thanks.", "Just {m}."]
            text = rng.choice(_just_counts(fragments, said)).format(m=said)
        else:
            said = _said_alone(domain, *single)
            text = rng.choice(_just_counts(A_VALUE, said)).format(value=said)
    else:
        opens = A_OPEN + A_FORGOT if kind == "missing_slot" else A_OPEN
        said = _said_alone(domain, *single) if bare else join(mentions(rng, domain, answers, answer=True))
        if volunteered:  # not "Business. That's all. Also, for 5."
            opens = [t for t in opens if "That's all" not in t]
        text = choose(rng, opens, said).format(details=said)
    if volunteered:
        said = join(mentions(rng, domain, volunteered))
        text += choose(rng, A_VOLUNTEER, said).format(details=said)
    return tidy(text)


def describe(values: dict[str, Any]) -> str:
    return ", ".join(f"{label(k)} {fmt(v)}" for k, v in values.items())


DECLINES = ["Sorry, I can't {task} here.", "I'm afraid I don't have a way to {task}.",
            "Unfortunately I can't {task} for you.", "I'm not able to {task} with the tools I have, sorry.",
            "Sorry, there's no way for me to {task} from here."]
OFFERS = ["What I can do is {can}.", "I can {can}, though.", "I'm able to {can} instead.", "If it helps, I can {can}."]


def decline(rng: random.Random, wanted: ToolDef, offered: list[ToolDef]) -> str:
    """The reply to a request no offered tool can do: say what cannot be done and what can, without asking."""
    can = join([task(t) for t in offered], "or")
    return tidy(f"{rng.choice(DECLINES).format(task=task(wanted))} {rng.choice(OFFERS).format(can=can)}")


# --- the assistant's closings ----------------------------------------------------------------------------------

def _plural(noun: str, n: int) -> str:
    return noun if n == 1 else plural(noun)  # as the grounding check reads it after a count ("4 family rooms")


FACT_LABELS = {"from": "origin", "to": "destination", "number_of_adults": "number of adults"}
_PREPOSITION = re.compile(r"^(on|at|in|for|from|to|with) ")
# A slot named for its preposition ("directed_by") takes its value right after it.
_TRAILING_PREPOSITIONS = ("by", "from", "to", "with", "for", "at", "in", "on")


def _fact(name: str, value: str) -> str:
    """One looked-up value: "the weight is 2 kg", "the conditions are light rain".

    >>> _fact("weight_kg", "2"), _fact("conditions", "light rain"), _fact("status", "open"), _fact("species", "cat")
    ('the weight is 2 kg', 'the conditions are light rain', 'the status is open', 'the species is cat')
    >>> _fact("number_of_adults", "5"), _fact("account_ending", "ending 2847"), _fact("number_of_days", "2 days")
    ('the number of adults is 5', 'the account ends in 2847', 'the number of days is 2')
    >>> _fact("number_stops", "1"), _fact("to_location", "New York"), _fact("directed_by", "Greta Gerwig")
    ('the number of stops is 1', 'the destination is New York', 'it is directed by Greta Gerwig')
    >>> _fact("recipient_name", "Carl Cummings"), _fact("clinic_name", "Summit Clinic"), _fact("check_in_date", "May 2")
    ('the recipient is Carl Cummings', 'the clinic is Summit Clinic', 'the check-in date is May 2')
    """
    words = name.lower().split("_")
    if len(words) > 1 and words[-1] == "name":  # "the recipient is Carl Cummings", not "the recipient name is ..."
        words = words[:-1]
    said = FACT_LABELS.get(name) or (label(name) if words[0] in ("number", "num") else _hyphenated(" ".join(words)))
    if len(words) == 2 and words[0] in ("from", "to"):  # SGD's "from_location": "the origin"
        said = "origin" if words[0] == "from" else "destination"
    *head, last = said.split(" ")
    if head and value.startswith(f"{last} "):  # "the account ends in 2847", not "... is ending 2847"
        value = value[len(last) + 1:]
        if last == "ending":  # nor "the account ending is 2847"
            return f"the {' '.join(head)} ends in {value}"
    if head and last in _UNITS and value[:1].isdigit() and head[-1] == "of":  # "the number of days is 2"
        value = value.removesuffix(f" {last}")
    elif head and last in _UNITS and value[:1].isdigit():
        said, value = " ".join(head), f"{value} {last.upper() if last in ('usd', 'eur') else last}"
        last = head[-1]
    if last in _TRAILING_PREPOSITIONS:  # "it is directed by X", not "the directed by is X"
        return f"it is {said} {value}"
    if " of " in said:  # the head noun comes before "of": "the number of adults is 5"
        last = said.split(" of ")[0].split(" ")[-1]
    plural = last.endswith("s") and not last.endswith(("ss", "us", "is", "ous")) and last not in ("species", "series", "news")
    return f"the {said} {'are' if plural else 'is'} {value}"


_PERCENT_WORDS = {"chance", "percent", "percentage", "humidity", "probability"}
_GRANTED = ("allowed", "included", "required", "available", "welcome", "accepted", "permitted")


def _bool_fact(name: str, value: bool) -> str:
    """A yes/no result as a sentence says it, not "the private visibility is no".

    >>> _bool_fact("has_pool", True), _bool_fact("pets_allowed", False), _bool_fact("insured", False)
    ('it has a pool', "pets aren't allowed", "it isn't insured")
    >>> _bool_fact("accepts_new_patients", False), _bool_fact("private_visibility", True), _bool_fact("pets_welcome", True)
    ("it doesn't accept new patients", 'private visibility is on', 'pets are welcome')
    >>> _bool_fact("has_wifi", False), _bool_fact("has_live_music", True)
    ("it doesn't have wifi", 'it has live music')
    """
    words = name.lower().split("_")
    rest = " ".join(words[1:])
    if words[0] == "has" and rest:
        thing = rest if _MASS_OR_PLURAL.search(rest) else f"a {rest}"  # "it has wifi", "it has a pool"
        return f"it has {thing}" if value else f"it doesn't have {thing}"
    if words[0] == "is" and rest:
        return f"it is {rest}" if value else f"it isn't {rest}"
    if len(words) > 1 and words[-1] in _GRANTED:
        subject = " ".join(words[:-1])
        verb = ("are" if subject.endswith("s") else "is") + ("" if value else "n't")
        return f"{subject} {verb} {words[-1]}"
    if len(words) > 1 and words[0].endswith("s") and not words[0].endswith("ss"):  # a verb: "accepts new patients"
        return f"it {words[0]} {rest}" if value else f"it doesn't {words[0][:-1]} {rest}"
    if len(words) == 1 and words[0].endswith(("ed", "able", "ible")):
        return f"it is {words[0]}" if value else f"it isn't {words[0]}"
    if len(words) == 1 and re.search(r"[^su]s$", words[0]):  # "it has subtitles", not "subtitles is off"
        return f"it has {words[0]}" if value else f"it has no {words[0]}"
    return f"{name.replace('_', ' ')} is {'on' if value else 'off'}"


# Entities that are people: a doctor "isn't accepting new patients" as "they", not "it".
_PERSON_NOUNS = {"doctor", "dentist", "therapist", "stylist", "payee", "contact", "attendee", "artist", "agent"}


def _about_person(sentence: str) -> str:
    """A fact about an "it" said about a person.

    >>> _about_person("it doesn't accept new patients"), _about_person("it accepts new patients"), _about_person("it is booked")
    ("they don't accept new patients", 'they accept new patients', 'they are booked')
    """
    head, _, rest = sentence.partition(" ")
    if head != "it":
        return sentence
    verb, _, tail = rest.partition(" ")
    said = {"is": "are", "isn't": "aren't", "has": "have", "doesn't": "don't"}.get(verb)
    if said is None and re.fullmatch(r"[a-z]+[^s]s", verb):  # "accepts" -> "accept"
        said = verb[:-1]
    return f"they {said or verb} {tail}".rstrip()


def _facts(domain: Domain, facts: dict[str, Any]) -> str:
    """Looked-up values as a person reads them: "the genre is horror and the daily rate is $57 a day"."""
    person = bool(domain.entity_slot) and domain.entity_slot.split("_")[0] in _PERSON_NOUNS
    said = []
    for k, v in facts.items():
        if v is None:
            continue
        if isinstance(v, bool):
            said.append(_about_person(_bool_fact(k, v)) if person else _bool_fact(k, v))
            continue
        if k == "seats" and isinstance(v, int):
            said.append(f"it seats {v}")  # not "the seats are 5"
            continue
        if isinstance(v, (int, float)) and set(k.lower().split("_")) & _PERCENT_WORDS:
            said.append(_fact(k, f"{fmt(v)}%"))  # "the chance of rain is 65%"
            continue
        if isinstance(v, int) and re.search(r"[^s]s$", k) and not unit_of(k) and not re.search(r"number|num_|_num", k):
            said.append(_fact(f"number_of_{k}", str(fmt(v))))  # "the number of travelers is 1", not "the travelers are 1"
            continue
        phrase = _PREPOSITION.sub("", mention(None, domain, k, v))
        value = phrase[phrase.index("$"):] if "$" in phrase else fmt(v)  # "$57 a day", not "the album X" or "2:48 long"
        if isinstance(v, (int, float)) and str(value).startswith("$"):  # "$17,840.09", not "$17840.09"
            value = re.sub(r"^\$[\d.]+", "$" + money(v, grouped=True), str(value))
        per = re.search(r" (?:a|per) (\w+)$", str(value))
        if per and (set(k.split("_")) & {"monthly", "daily", "nightly", "night", "per", per.group(1)}):
            value = str(value)[:per.start()]  # not "the monthly rent is $1450 a month", "the ticket price is $180 a ticket"
        said.append(_fact(k, str(value)))
    return join(said)


def _counted(facts: dict[str, Any]) -> dict[str, str]:
    """Counts said with the type of what they count: "2 deluxe rooms", not "2 rooms, a deluxe room" (a `rooms` count
    and a `room_type`); by the count's slot.

    >>> _counted({"nights": 2, "rooms": 1, "room_type": "suite"}), _counted({"rooms": 3, "room_type": "family room"})
    ({'rooms': '1 suite'}, {'rooms': '3 family rooms'})
    """
    said = {}
    for name, value in facts.items():
        count = f"{name.removesuffix('_type')}s" if name.endswith("_type") else ""
        n = facts.get(count)
        if isinstance(value, str) and isinstance(n, int) and not isinstance(n, bool):
            said[count] = f"{n} {_plural(value, n)}"
    return said


def _typed(counted: dict[str, str]) -> set[str]:
    """The type slots that `_counted` says with their counts: "room_type" for "rooms"."""
    return {f"{k.removesuffix('s')}_type" for k in counted}


_RELATIVE_DAY = re.compile(r"(today|tomorrow|tonight|(this|next) \w+)")


def _dated(said: str) -> str:
    """A fact of a closing said as a day with no preposition ("today", "next Monday"; a user says "send it today")
    reads in a list as when it is scheduled for: not "$975, from your checking account and today".

    >>> _dated("today"), _dated("next Monday"), _dated("on the 15th"), _dated("from your checking account")
    ('scheduled for today', 'scheduled for next Monday', 'on the 15th', 'from your checking account')
    """
    return f"scheduled for {said}" if _RELATIVE_DAY.fullmatch(said) else said


def _what_was_done(domain: Domain, facts: dict[str, Any]) -> str:
    """An action's facts in the words a user would use, from the assistant's side: "at The Majestic, on July 12th,
    for 6 tickets", "from your checking account"."""
    counted = _counted(facts)
    facts = {k: v for k, v in facts.items() if k not in _typed(counted)}
    moved = ""
    if facts.get("event_date") and facts.get("new_date"):  # a rescheduled event: "moved from August 10th to August 18th"
        moved = f"moved from {fmt(facts.pop('event_date'))} to {fmt(facts.pop('new_date'))}"
    said = join([moved] * bool(moved) + [_dated(counted.get(k) or mention(None, domain, k, v))
                                         for k, v in facts.items() if v is not None])
    said = re.sub(r"\$(\d{4,})(?=\.\d\d|\b)", lambda m: f"${int(m[1]):,}", said)  # "$1,800", as a closing writes it
    return re.sub(r"\bmy\b", "your", said)


def _contact(facts: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Split a phone number off an action's facts into its own sentence: a user gives a place "at 12 Main St", but a
    closing says "The phone number is 408-555-0199.", not "for 2 people and at 408-555-0199".

    >>> _contact({"party_size": 2, "phone_number": "408-555-0199"})
    ({'party_size': 2}, ' The phone number is 408-555-0199.')
    """
    phones = [k for k in facts if "phone" in k.lower().split("_") and isinstance(facts[k], str)]
    rest = {k: v for k, v in facts.items() if k not in phones}
    return rest, "".join(f" The phone number is {facts[k]}." for k in phones)


_NAMED = re.compile(r"(called|named|titled) ")


def _read_back(domain: Domain, tool: ToolDef, facts: dict[str, Any], asked: dict[str, Any] | None) -> dict[str, Any]:
    """The facts of a finished action that its closing reads back, given the `asked` arguments. An imported
    catalog's closing, with no hand-written mentions to weave them into a sentence, says what the user asked for,
    not every column of the entity ("..., the city is Acworth and the species is rabbit"); and no closing states a
    default the user never gave as if it were their words (`with the note "transfer"`, "the reason is plans changed")."""
    if asked is None:
        return facts
    if domain.source != "builtin":
        return {k: v for k, v in facts.items() if k in asked}
    return {k: v for k, v in facts.items() if k in asked or k not in tool.optional or not _users_own(domain.slot(k))}


# Words of a slot whose value is the user's own account (a reason, a note): its default is no fact of the booking.
_OWN_WORDS = {"reason", "memo", "note", "purpose", "message", "comment"}


def _users_own(slot: SlotSpec) -> bool:
    """Whether a slot holds the user's own words: quoted when said, or a reason or note.

    >>> _users_own(SlotSpec(name="cancel_reason", description="")), _users_own(SlotSpec(name="seating", description=""))
    (True, False)
    """
    return '"{value}"' in (slot.mention or "") or bool(set(slot.name.lower().split("_")) & _OWN_WORDS)


def _done(rng: random.Random, tool: ToolDef) -> str:
    """How a finished action opens its closing; a cancellation says so, and is no "Great news!"."""
    return rng.choice(CANCELLED if cancels(tool) else DONE)


def final_answer(rng: random.Random, domain: Domain, tool: ToolDef, result: dict[str, Any],
                 asked: dict[str, Any] | None = None) -> str:
    """The assistant's closing message: what happened, in a sentence, with the facts from the tool result. A lookup
    reports what it found, not the `asked` arguments read back ("the city is Tampa, the date is today")."""
    entity = domain.entity or "result"
    if "error" in result:
        return tidy(f"Sorry, that didn't work: {result['error']}.")
    if tool.kind == "search":
        rows = result.get("results", [])
        if not rows:
            return tidy(f"I couldn't find any {_plural(entity, 2)} matching that. Would you like to try something else?")
        key = domain.entity_slot
        if key and all(r.get(key) for r in rows):
            names = join([str(r[key]) for r in rows])
            return tidy(f"I found {len(rows)} {_plural(entity, len(rows))}: {names}.")
        return tidy(f"I found {len(rows)} {_plural(entity, len(rows))}; the first one: {_facts(domain, rows[0])}.")
    name = result.get(domain.entity_slot) if domain.entity_slot else None
    facts = {k: v for k, v in result.items() if k not in ("status", "confirmation_id", domain.entity_slot)}
    subject = f"for {name}" if name else ""
    if tool.kind == "action":
        facts = _read_back(domain, tool, facts, asked)
    if tool.kind == "action" and domain.source != "builtin":  # no hand-written mentions: say the facts plainly
        said = f" For {name}: {_facts(domain, facts)}." if name and facts else f" {_facts(domain, facts)}." if facts else ""
        return tidy(f"{_done(rng, tool)}{said} Your confirmation number is {result.get('confirmation_id')}.")
    if tool.kind == "action":
        facts, phone = _contact(facts)
        done = _what_was_done(domain, facts)
        if not name and _NAMED.match(done) and ", " in done:  # "All set. Birthday dinner, for August 18th, ...", not
            name, done = _NAMED.sub("", done, count=1).partition(", ")[::2]  # "All set. That's called Birthday dinner"
        opener = _done(rng, tool)
        that = "It's" if opener.startswith("That's") else "That's"  # not "That's taken care of. That's RIDE-7730, ..."
        said = f" {name}, {done}." if name and done else f" {name}." if name else f" {that} {done}." if done else ""
        return tidy(f"{opener}{said}{phone} Your confirmation number is {result.get('confirmation_id')}.")
    sent = {**tool.optional, **asked} if asked else {}  # the call as it ran, defaults and all
    found = {k: v for k, v in facts.items() if not (k in sent and normalize(v) == normalize(sent[k]))}
    if not found:  # the result only repeats what was asked: not "Here's what I found: the tracking number is 1Z..."
        checked = name or join([str(fmt(v)) for v in facts.values()]) or "that"
        return tidy(f"I checked {checked}, but found nothing more to report.")
    return tidy(f"Here's what I found {subject}: {_facts(domain, found)}.")
