"""The offline backend's grammar: many phrasings per act, so openings and questions are not a handful of templates.

Every phrase that carries a slot value keeps the value verbatim (grounding checks rely on it), and every
question names its slot with `slot_label` or lists the enum options (question_targets relies on it).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

from speakrl.pipeline.checks import slot_label
from speakrl.schemas.catalog import Domain, ToolDef
from speakrl.schemas.dialogue import Ambiguity

PERSONAS = [
    "busy professional", "retired teacher", "college student", "parent of three", "frequent traveler",
    "small business owner", "nurse on night shifts", "software engineer", "tourist", "grad student",
    "freelance designer", "sales manager",
]
STYLES = ["terse", "polite", "chatty", "casual"]

OPENERS = [
    "I'd like to {intent}", "Can you {intent}", "Please {intent}", "I need to {intent}", "Could you help me {intent}",
    "Help me {intent}", "I want to {intent}", "I'm looking to {intent}", "Would you {intent} for me", "I have to {intent}",
    "Can I get you to {intent}", "I was hoping you could {intent}", "Let's {intent}", "Any chance you can {intent}",
    "I'm trying to {intent}", "Go ahead and {intent}",
]
DETAIL_JOINS = ["{opener}: {details}.", "{opener}, {details}.", "{opener} — {details}.", "{opener}. It's {details}.",
                "{opener}. Details: {details}.", "{opener}. Here's what I have: {details}.", "{opener} ({details})."]
BARE = ["{opener}.", "{opener}?", "{opener}, please."]
GREETINGS = ["Hi!", "Hello.", "Hey there.", "Good morning!", "Hi there,", "Hey,"]
THANKS = ["Thanks!", "Thank you so much.", "Thanks in advance.", "I appreciate it.", "Thank you!"]
CHATTER = [
    "It's been a long week.", "I keep forgetting to do this.", "My partner asked me to sort it out.",
    "It's kind of a special occasion.", "I'm doing this between meetings.", "First time using this, so bear with me.",
    "I'd rather get it done today.", "A friend recommended you.",
]
GENERIC_MENTIONS = ["with {label} {value}", "{label}: {value}", "the {label} being {value}", "{value} as the {label}"]
CONFLICT_JOINS = ["{a}, but also {b}", "{a} — though {b} would be better", "{a}, or actually {b}",
                  "{a}; my friend insists on {b}", "ideally {a}, but I also said {b}"]

Q_MISSING = [
    "Could you tell me the {labels}?", "What {labels} would you like?", "Which {labels} should I use?",
    "I'll need the {labels} — what should I put?", "Sure! What's the {labels}?", "Happy to help. What {labels} do you have in mind?",
    "Before I do that, what is the {labels}?", "Got it. Can you give me the {labels}?", "One thing first: the {labels}?",
]
Q_VAGUE = [
    "When you say \"{vague}\", which {label} exactly do you mean?", "Could you narrow \"{vague}\" down to a specific {label}?",
    "\"{vague}\" is a bit open — what {label} should I use?", "Can you be more specific about the {label} than \"{vague}\"?",
    "Which {label} do you mean by \"{vague}\"?",
]
Q_INVALID = [
    "Sorry, \"{bad}\" isn't an option for the {label}. You can choose {options}. Which would you like?",
    "I can't use \"{bad}\" as the {label}; the options are {options}. Which one works?",
    "\"{bad}\" isn't available. For the {label} I can offer {options} — which do you prefer?",
    "The {label} can only be {options}, not \"{bad}\". What should I pick?",
]
Q_CONFLICT = [
    "You mentioned both {a} and {b} for the {label} — which should I go with?",
    "Just to check: {a} or {b} for the {label}?", "Those conflict: {a} versus {b}. Which {label} do you want?",
    "Should the {label} be {a} or {b}?",
]
Q_REFERENCE = [
    "I found {n} options: {names}. Which {label} do you mean?", "There are {n} matches — {names}. Which {label} is it?",
    "That could be {names}. Which {label} did you have in mind?", "I see {names}. Which {label} should I use?",
]
A_OPEN = ["{details}.", "Sure — {details}.", "Oh right, {details}.", "{details}, please.", "Let's say {details}.",
          "Make it {details}.", "Sorry, I should have said: {details}.", "Yes: {details}."]
A_VALUE = ["{value}.", "{value}, please.", "The {value} one.", "Let's go with {value}.", "{value} works.", "Hmm, {value}."]
A_VOLUNTEER = [" Oh, and {details}.", " Also, {details}.", " And {details}, if possible.", " Plus {details}."]
DONE = ["Done!", "All set.", "Great news:", "It's booked.", "Confirmed.", "Everything went through."]


def fmt(value: Any) -> Any:
    """A value as a person writes it: 60.0 is "60"."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def join(items: Sequence[str], word: str = "and") -> str:
    """ "a", "a and b", "a, b and c"."""
    items = [str(i) for i in items]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {word} " + items[-1]


def intent(tool: ToolDef) -> str:
    text = tool.description.strip().rstrip(".")
    return text[:1].lower() + text[1:]


def mention(rng: random.Random | None, domain: Domain, name: str, value: Any) -> str:
    """How a user says a slot's value; the value itself stays verbatim."""
    slot = domain.slot(name)
    label = slot_label(name)
    if isinstance(value, bool):
        return f"with {label}" if value else f"without {label}"
    if slot.mention:
        return slot.mention.format(value=fmt(value))
    template = GENERIC_MENTIONS[0] if rng is None else rng.choice(GENERIC_MENTIONS)
    return template.format(label=label, value=fmt(value))


def reference_detail(domain: Domain, search_args: dict[str, Any]) -> str:
    """How the user refers to an entity without naming it: "the restaurant in Fremont, Vietnamese food"."""
    entity = domain.entity or slot_label(domain.entity_slot or "one")
    return f"the {entity} " + join([mention(None, domain, k, v) for k, v in search_args.items()])


def opening(rng: random.Random, domain: Domain, tool: ToolDef, stated: dict[str, Any], ambiguities: list[Ambiguity],
            search_args: dict[str, Any]) -> str:
    """The user's first message: the intent, the stated values, and whatever stands in for the ambiguous ones
    (for an ambiguous reference, the description that a search needs)."""
    details = [a.detail for a in ambiguities if a.type == "ambiguous_reference"]
    for name, value in stated.items():
        if name not in search_args:
            details.append(mention(rng, domain, name, value))
    for amb in ambiguities:
        if amb.type == "underspecified_value":
            details.append(amb.detail)
        elif amb.type == "invalid_value":
            details.append(mention(rng, domain, amb.slot, amb.detail))
        elif amb.type == "conflicting_constraints":
            a, b = (mention(rng, domain, amb.slot, v) for v in amb.candidates)
            details.append(rng.choice(CONFLICT_JOINS).format(a=a, b=b))
    rng.shuffle(details)
    opener = rng.choice(OPENERS).format(intent=intent(tool))
    if not details:
        return rng.choice(BARE).format(opener=opener)
    return rng.choice(DETAIL_JOINS).format(opener=opener, details=join(details))


def persona(rng: random.Random) -> tuple[str, str]:
    return rng.choice(PERSONAS), rng.choice(STYLES)


def styled(rng: random.Random, text: str, style: str) -> str:
    """Wrap a message in the user's style."""
    if style == "polite":
        return f"{rng.choice(GREETINGS)} {text} {rng.choice(THANKS)}"
    if style == "chatty":
        return f"{rng.choice(GREETINGS)} {rng.choice(CHATTER)} {text}"
    if style == "casual":
        return text[:1].lower() + text[1:]
    return text


def question_missing(rng: random.Random, names: list[str]) -> str:
    return rng.choice(Q_MISSING).format(labels=join([slot_label(n) for n in names]))


def question_vague(rng: random.Random, name: str, vague: str) -> str:
    return rng.choice(Q_VAGUE).format(vague=vague, label=slot_label(name))


def question_invalid(rng: random.Random, name: str, bad: str, options: list[str]) -> str:
    return rng.choice(Q_INVALID).format(bad=bad, label=slot_label(name), options=join(options, "or"))


def question_conflict(rng: random.Random, name: str, a: str, b: str) -> str:
    return rng.choice(Q_CONFLICT).format(a=a, b=b, label=slot_label(name))


def question_reference(rng: random.Random, name: str, candidates: list[str]) -> str:
    return rng.choice(Q_REFERENCE).format(n=len(candidates), names=join(candidates, "or"),
                                          label=slot_label(name))


def user_answer(rng: random.Random, domain: Domain, answers: dict[str, Any], volunteered: dict[str, Any]) -> str:
    if len(answers) == 1 and rng.random() < 0.5 and not isinstance(next(iter(answers.values())), bool):
        text = rng.choice(A_VALUE).format(value=fmt(next(iter(answers.values()))))
    else:
        text = rng.choice(A_OPEN).format(details=join([mention(rng, domain, k, v) for k, v in answers.items()]))
    if volunteered:
        text += rng.choice(A_VOLUNTEER).format(details=join([mention(rng, domain, k, v) for k, v in volunteered.items()]))
    return text[:1].upper() + text[1:]


def describe(values: dict[str, Any]) -> str:
    return ", ".join(f"{slot_label(k)} {fmt(v)}" for k, v in values.items())


def final_answer(rng: random.Random, domain: Domain, tool: ToolDef, result: dict[str, Any]) -> str:
    """The assistant's closing message, built from the tool result so it states real data."""
    if "error" in result:
        return f"Sorry, that didn't work: {result['error']}."
    if tool.kind == "search":
        rows = result.get("results", [])
        if not rows:
            return "I couldn't find anything matching that."
        entity = domain.entity_slot
        names = [str(r.get(entity, "")) if entity else json.dumps(r) for r in rows]
        return f"I found {result.get('count', len(rows))} option(s): {join(names)}."
    facts = {k: v for k, v in result.items() if k not in ("status", "confirmation_id")}
    if tool.kind == "action":
        return f"{rng.choice(DONE)} {intent(tool).capitalize()} — {describe(facts)}. Confirmation: {result.get('confirmation_id')}."
    return f"Here's what I found: {describe(facts)}."
