"""Golden tests: each LLM prompt, rendered from a fixed scenario, is pinned under tests/prompts/golden/.

After an intended prompt change, regenerate with `SPEAKRL_UPDATE_GOLDEN=1 pytest tests/prompts` and review the diff.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import jinja2
import pytest

from speakrl.pipeline.catalog.specs import domain_specs
from speakrl.pipeline.llm import Prompt, hash_template, render
from speakrl.pipeline.stages import llm_dialogues
from speakrl.schemas.catalog import Catalog, Domain, SlotSpec, ToolDef
from speakrl.schemas.dialogue import Ambiguity, Dialogue, FunctionCall, Message, Provenance, Scenario, ToolCall, TurnLabel

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("SPEAKRL_UPDATE_GOLDEN") == "1"

DOMAIN = Domain(
    name="restaurants",
    description="Find restaurants and book tables",
    entity="restaurant",
    entity_slot="restaurant_name",
    attributes=["restaurant_name", "city"],
    slots=[
        SlotSpec(name="restaurant_name", description="Name of the restaurant", values=["La Piazza", "Casa Verde"]),
        SlotSpec(name="city", description="City of the restaurant", values=["Oakland"]),
        SlotSpec(name="date", description="Date of the reservation", values=["March 8th"], vague=["sometime next week"]),
        SlotSpec(name="party_size", description="Number of people", type="integer", values=["4"]),
        SlotSpec(name="seating", description="Where to sit", enum=["indoor", "outdoor"]),
    ],
    tools=[
        ToolDef(name="reserve_table", description="Reserve a table at a restaurant", kind="action",
                required=["restaurant_name", "date", "party_size"], optional={"seating": "indoor"},
                result_slots=["restaurant_name", "date", "party_size", "seating"]),
    ],
)
CATALOG = Catalog(domains=[DOMAIN])
SCENARIO = Scenario(
    id="s-golden", seed=7, domain="restaurants", tool="reserve_table", flow=["reserve_table"],
    goal={"restaurant_name": "La Piazza", "date": "March 8th", "party_size": 4, "seating": "indoor"},
    stated={"restaurant_name": "La Piazza", "party_size": 4},
    ambiguities=[Ambiguity(type="underspecified_value", slot="date", detail="sometime next week")],
    needs_clarification=True,
    opening="Book La Piazza for 4 people sometime next week.",
    persona="a retired teacher", style="polite",
)
CALL = FunctionCall(name="reserve_table", arguments=json.dumps({"restaurant_name": "La Piazza", "date": "March 8th", "party_size": 4}))
RESULT = {"status": "confirmed", "restaurant_name": "La Piazza", "date": "March 8th", "party_size": 4, "seating": "indoor"}
DIALOGUE = Dialogue(
    id="d-s-golden", scenario_id="s-golden", domain="restaurants", tools=domain_specs(DOMAIN),
    messages=[
        Message(role="system", content="You are a helpful assistant for restaurant bookings."),
        Message(role="user", content=SCENARIO.opening),
        Message(role="assistant", content="Which date next week would you like?", reasoning_content="The date is vague."),
        Message(role="user", content="March 8th, please."),
        Message(role="assistant", reasoning_content="I have everything.", tool_calls=[ToolCall(id="call_0", function=CALL)]),
        Message(role="tool", content=json.dumps(RESULT), tool_call_id="call_0", name="reserve_table"),
        Message(role="assistant", content="Done: La Piazza, March 8th, for 4 people.", reasoning_content="Report it."),
    ],
    labels=[TurnLabel(message_index=2, act="clarify", target_slots=["date"]), TurnLabel(message_index=4, act="tool_call"),
            TurnLabel(message_index=6, act="answer")],
    gold_calls=[CALL], goal=SCENARIO.goal, ambiguities=SCENARIO.ambiguities, needs_clarification=True, outcome="completed",
    provenance=Provenance(backend="offline", seed=7),
)


def prompts() -> dict[str, Prompt]:
    return {
        "scenario_writer.j2": llm_dialogues.writer_prompt(SCENARIO, CATALOG),
        "user_simulator.j2": llm_dialogues.user_prompt(SCENARIO, CATALOG, DIALOGUE.messages[:3]),
        "assistant.j2": llm_dialogues.assistant_prompt(DIALOGUE.messages[0].content, DIALOGUE.tools, DIALOGUE.messages[:4]),
        "paraphrase.j2": llm_dialogues.paraphrase_prompt(SCENARIO, DIALOGUE)[0],
        "judge.j2": llm_dialogues.judge_prompt(DIALOGUE),
    }


def as_text(prompt: Prompt) -> str:
    return "".join(f"=== {m['role']} ===\n{m['content']}\n" for m in prompt.messages)


@pytest.mark.parametrize("name", sorted(prompts()))
def test_rendered_prompt_matches_golden(name):
    prompt = prompts()[name]
    path = GOLDEN / name.replace(".j2", ".txt")
    if UPDATE:
        path.write_text(as_text(prompt), encoding="utf-8")
    assert as_text(prompt) == path.read_text(encoding="utf-8")
    assert prompt.template == name and prompt.template_hash == hash_template(name)


def test_every_llm_template_has_a_golden_render():
    templates = {p.name for p in resources.files("speakrl.prompts").iterdir() if p.name.endswith(".j2") and not p.name.endswith(".md.j2")}
    assert templates == set(prompts())


def test_missing_variables_are_errors_not_blanks():
    with pytest.raises(jinja2.UndefinedError):
        render("user_simulator.j2", persona="x", style="y", intent="z", goal={})  # no conversation


def test_the_assistant_prompt_hides_the_goal_and_the_user_prompt_shows_it():
    p = prompts()
    assert "March 8th" not in json.dumps(p["assistant.j2"].messages[:1])  # only the user's own words carry it
    assert "- date: March 8th" in p["user_simulator.j2"].messages[-1]["content"]
    assert "sometime next week" in p["scenario_writer.j2"].messages[-1]["content"]
    assert "keep: La Piazza" in p["paraphrase.j2"].messages[-1]["content"]
