"""A responder for the local OpenAI server that plays every LLM role of the dialogues stage from offline drafts.

It reads each request the way a model would — which structured output is asked for (the json_schema
name), and the prompt text — and answers with the matching part of the offline dialogue: the draft's
opening for the scenario writer, its next assistant turn (as a structured turn) for the assistant, its
next user message for the user simulator, a light rewrite for paraphrase, and "pass" for the judge.
So the LLM modes can be tested end to end, through real HTTP and the real SDK, with known-good content.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from speakrl.schemas.catalog import Catalog
from speakrl.schemas.dialogue import Dialogue, Scenario

_LINE = re.compile(r"^\[(\d+)\] (USER|ASSISTANT): (.*)$", re.M)


class ReplayResponder:
    """Without scenarios it still answers paraphrase and judge requests, which need only the prompt."""

    def __init__(self, scenarios: Sequence[Scenario] = (), drafts: Sequence[Dialogue] = (), catalog: Catalog | None = None):
        by_id = {d.scenario_id: d for d in drafts}
        self.pairs = [(s, by_id[s.id]) for s in scenarios if s.id in by_id]
        from speakrl.pipeline.stages.llm_dialogues import writer_prompt

        # The exact prompt the stage sends for each scenario's opening, so the right draft answers it.
        self.by_writer_prompt: dict[str, Dialogue] = {}
        self.group: dict[str, str] = {}  # draft id -> its writer prompt
        for s, d in self.pairs:
            key = writer_prompt(s, catalog).messages[-1]["content"]
            self.by_writer_prompt[key] = d
            self.group[d.id] = key
        # The opening served for a writer prompt -> that prompt. Scenarios with the same writer prompt get the
        # same (cached) opening, so a conversation is matched by its prompt group and later user messages.
        self.opening_group = {d.messages[1].content: key for key, d in self.by_writer_prompt.items()}

    def __call__(self, body: dict[str, Any]) -> Any:
        fmt = body.get("response_format") or {}
        name = fmt.get("json_schema", {}).get("name") if fmt.get("type") == "json_schema" else None
        prompt = "\n".join(str(m.get("content") or "") for m in body["messages"])
        if name is None:  # json_object fallback: the schema is described in the last system message
            name = next((n for n in ("Opening", "AssistantTurn", "UserTurn", "Paraphrase", "Judgement") if n in prompt), "")
        if name == "Opening":
            user = next(m["content"] for m in body["messages"] if m["role"] == "user")
            draft = self.by_writer_prompt.get(user)
            return {"message": draft.messages[1].content if draft else "hello"}
        return getattr(self, f"_{name}", lambda _: {"error": "unknown request"})(prompt)

    def _draft_in(self, prompt: str) -> Dialogue:
        """The draft whose user messages so far are the prompt's (openings can repeat across scenarios; then
        the user simulator's prompt, which shows the goal, tells them apart)."""
        said = re.findall(r"^USER: (.*)$", prompt, re.M)
        group = self.opening_group.get(said[0]) if said else None
        found = [(s, d) for s, d in self.pairs if self.group[d.id] == group
                 and [m.content for m in d.messages if m.role == "user"][1: len(said)] == said[1:]]
        # Two scenarios with the same writer prompt get the same (cached) opening: then the user simulator's
        # prompt, which shows the persona and the goal, picks the scenario.
        by_goal = [(s, d) for s, d in self.pairs if f"You are {s.persona} and write in a {s.style} style" in prompt
                   and all(f": {v}\n" in prompt for v in s.goal.values() if not isinstance(v, bool))]
        both = [pair for pair in by_goal if pair in found]
        return (both or by_goal or found)[0][1]

    def _AssistantTurn(self, prompt: str) -> dict[str, Any]:
        d = self._draft_in(prompt)
        done = prompt.count("\nASSISTANT")
        label = d.labels[done]
        m = d.messages[label.message_index]
        call = m.tool_calls[0].function if m.tool_calls else None
        return {
            "reasoning": m.reasoning_content or "",
            "act": label.act,
            "target_slots": label.target_slots,
            "content": m.content,
            "tool_name": call.name if call else None,
            "arguments": call.arguments if call else None,
        }

    def _UserTurn(self, prompt: str) -> dict[str, Any]:
        d = self._draft_in(prompt)
        users = [m.content for m in d.messages if m.role == "user"]
        return {"message": users[prompt.count("\nUSER:")]}

    def _Paraphrase(self, prompt: str) -> dict[str, Any]:
        lines = _LINE.findall(prompt)
        return {"utterances": [{"index": int(i), "text": ("Well, " if role == "USER" else "Sure. ") + text} for i, role, text in lines]}

    def _Judgement(self, prompt: str) -> dict[str, Any]:
        found = re.search(r"Clarification questions to judge: (.*)\.$", prompt, re.M)
        indices = [int(x) for x in re.findall(r"\[(\d+)\]", found.group(1))] if found else []
        turns = [{"message_index": i, "necessary": True, "targeted": True, "reason": "The tool needs it."} for i in indices]
        return {"turns": turns, "verdict": "pass", "reason": "Every question was needed and on target."}


def judge_reply(body: dict[str, Any], verdict: str = "fail") -> str:
    """A judge answer with the given verdict for every question in the request (for tests)."""
    prompt = "\n".join(str(m.get("content") or "") for m in body["messages"])
    found = re.search(r"Clarification questions to judge: (.*)\.$", prompt, re.M)
    indices = [int(x) for x in re.findall(r"\[(\d+)\]", found.group(1))] if found else []
    ok = verdict == "pass"
    why = "Needed." if ok else "It was already given."
    turns = [{"message_index": i, "necessary": ok, "targeted": ok, "reason": why} for i in indices]
    overall = "Fine." if ok else "The assistant asked for something it already had."
    return json.dumps({"turns": turns, "verdict": verdict, "reason": overall})
