"""Hand-built SpeakER run directories for tests: small, varied, with every message shape (no generator needed)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from speakrl.pipeline.io import atomic_write_text, write_jsonl
from speakrl.schemas.dialogue import (
    Ambiguity, Dialogue, FunctionCall, Message, Provenance, Rejection, ToolCall, ToolSpec, TurnLabel,
)

DOMAINS = {
    "restaurants": ("reserve_table", ["restaurant_name", "party_size", "date"], ["Luigi's", "Sakura", "Taqueria Sol", "Le Petit", "Green Bowl"]),
    "flights": ("book_flight", ["origin", "destination", "date"], ["Boston", "Denver", "Austin", "Seattle", "Miami"]),
    "hotels": ("book_hotel", ["hotel_name", "nights", "date"], ["Grand Plaza", "Sea Breeze", "Maple Inn", "Hilltop", "Riverside"]),
    "movies": ("buy_movie_tickets", ["movie_title", "tickets", "date"], ["Dune", "Up", "Heat", "Alien", "Jaws"]),
}
DATES = ["March 3", "April 12", "May 20", "June 8", "July 30", "August 2"]
PHRASES = [
    "I'd like to get this sorted for my family trip, could you help me out please",
    "My manager asked me to arrange this quickly before the quarterly meeting ends",
    "We are celebrating an anniversary so everything has to go smoothly this time",
    "Can you handle this for me, I am stuck at the airport with a dying phone battery",
    "Planning ahead for once because last year everything was fully booked already",
    "This is for a surprise party, so please keep the details between us if possible",
]


def tool_spec(name: str, slots: list[str]) -> ToolSpec:
    props = {s: {"type": "string", "description": f"the {s.replace('_', ' ')}"} for s in slots}
    props["notes"] = {"type": "string", "description": "free-text notes", "default": ""}
    return ToolSpec.model_validate({"type": "function", "function": {"name": name, "description": f"{name} tool",
                                    "parameters": {"type": "object", "properties": props, "required": slots}}})


def make_dialogue(i: int, domain: str, *, scenario_id: str | None = None, variant: int = 0) -> Dialogue:
    tool, slots, pool = DOMAINS[domain]
    goal = {slots[0]: pool[(i + variant) % len(pool)], slots[1]: str(2 + (i * 7 + variant) % 9), slots[2]: DATES[(i * 5 + variant) % len(DATES)]}
    args = json.dumps(goal)
    ambiguous = i % 3 != 0
    phrase = PHRASES[(i + variant) % len(PHRASES)]
    opening = f"Request {i}-{variant}: {phrase}. The {slots[1].replace('_', ' ')} is {goal[slots[1]]} on {goal[slots[2]]} (ticket #{i * 7919 % 10007})."
    messages = [Message(role="system", content=f"You are a {domain} assistant. Ask before you act.")]
    labels, calls = [], []
    if ambiguous:
        messages.append(Message(role="user", content=opening))
        messages.append(Message(role="assistant", content=f"Which {slots[0].replace('_', ' ')} would you like?",
                                reasoning_content=f"The {slots[0]} is missing."))
        labels.append(TurnLabel(message_index=2, act="clarify", target_slots=[slots[0]]))
        messages.append(Message(role="user", content=f"{goal[slots[0]]}, please — reference code {i * 31337 % 99991}."))
    else:
        messages.append(Message(role="user", content=f"{opening} Use {goal[slots[0]]}."))
    call = FunctionCall(name=tool, arguments=args)
    calls.append(call)
    idx = len(messages)
    messages.append(Message(role="assistant", reasoning_content="Everything is known; calling the tool.",
                            tool_calls=[ToolCall(id=f"call_{i}_{variant}", function=call)]))
    labels.append(TurnLabel(message_index=idx, act="tool_call"))
    messages.append(Message(role="tool", tool_call_id=f"call_{i}_{variant}", name=tool,
                            content=json.dumps({"status": "confirmed", "id": f"C{i:04d}{variant}"})))
    messages.append(Message(role="assistant", content=f"Done! Confirmation C{i:04d}{variant}. Ünïcödé ✓"))
    labels.append(TurnLabel(message_index=idx + 2, act="answer"))
    ambiguities = [Ambiguity(type="missing_slot", slot=slots[0], detail="not said", candidates=pool[:2])] if ambiguous else []
    return Dialogue(
        id=f"d{i:04d}-{variant}", scenario_id=scenario_id or f"s{i:04d}", domain=domain,
        tools=[tool_spec(tool, slots), tool_spec(f"find_{domain}", ["date"])], messages=messages, labels=labels,
        gold_calls=calls, goal=goal, ambiguities=ambiguities, needs_clarification=ambiguous, outcome="completed",
        provenance=Provenance(backend="offline", seed=i, versions={"speakrl": "0.1.0"}, usage={}),
    )


def make_run(run_dir: Path, n: int = 48, *, rejected: int = 5, config: dict | None = None) -> Path:
    """A run directory with n accepted dialogues over four domains, and a few rejections."""
    names = list(DOMAINS)
    dialogues = [make_dialogue(i, names[i % len(names)]) for i in range(n)]
    rejections = [Rejection(id=f"r{k}", stage="validate", check=["ungrounded_argument", "wrong_tool"][k % 2],
                            reason="the call used a value the user never gave",
                            row=make_dialogue(1000 + k, names[k % len(names)]).model_dump(mode="json") if k % 2 == 0 else None,
                            raw="raw output" if k % 2 else None)
                  for k in range(rejected)]
    run_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(run_dir / "accepted.jsonl", dialogues)
    write_jsonl(run_dir / "rejected.jsonl", rejections)
    cfg = {"n": n + rejected, "seed": 0, "out": str(run_dir), "catalog": "builtin",
           "validate": {"near_duplicate_threshold": 0.9, "num_perm": 64, "judge": False}, **(config or {})}
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg))
    atomic_write_text(run_dir / "manifest.json", json.dumps({
        "speakrl_version": "0.1.0", "created": "2026-11-22T00:00:00Z", "seed": 0, "n": n + rejected,
        "config_hash": "abc123", "versions": {"speakrl": "0.1.0", "datasets": "5.2.0"}, "stages": {}, "counts": {}}))
    return run_dir


def check_published(load, run_dir: Path, names: tuple[str, str, str | None] = ("default", "decision_points", "rejected")
                    ) -> dict[str, dict[str, int]]:
    """Assert that `load(config)` (a DatasetDict per config, from a local dir or the Hub) holds exactly the run's rows.

    Every accepted dialogue is in exactly one split of `default`, and each row equals `dialogue_row` of it and turns
    back into the very same Dialogue; `decision_points` holds exactly the decision points of each split's
    dialogues; `rejected` holds every rejection. Returns the row counts per config and split. `names` are the three
    configs' names (SpeakER-SGD's beside SpeakER: "sgd", "sgd_decision_points", and no rejected config).
    """
    dialogues_name, points_name, rejected_name = names
    from speakrl.pipeline.decision_points import decision_points
    from speakrl.pipeline.io import read_jsonl
    from speakrl.pipeline.stages.publish import decision_point_row, dialogue_from_row, dialogue_row, features, rejection_row

    feats = features()
    accepted = {d.id: d for d in read_jsonl(run_dir / "accepted.jsonl", Dialogue)}
    rejected = sorted(read_jsonl(run_dir / "rejected.jsonl", Rejection), key=lambda r: r.id)
    counts: dict[str, dict[str, int]] = {}
    default = load(dialogues_name)
    assert default["train"].features == feats[dialogues_name]
    seen: list[str] = []
    for split, ds in default.items():
        rows = ds.to_list()
        for row in rows:
            original = accepted[row["id"]]
            assert row == dialogue_row(original), f"row {row['id']} differs from its dialogue"
            assert dialogue_from_row(row) == original
        seen += [r["id"] for r in rows]
        counts.setdefault(dialogues_name, {})[split] = len(rows)
    assert sorted(seen) == sorted(accepted), "every accepted dialogue must be in exactly one split"
    points = load(points_name)
    assert set(points) == set(default)
    for split, ds in points.items():
        assert ds.features == feats[points_name]
        expected = [decision_point_row(p) for row in default[split].to_list() for p in decision_points(accepted[row["id"]])]
        assert ds.to_list() == expected
        counts.setdefault(points_name, {})[split] = len(expected)
    if rejected and rejected_name:
        rej = load(rejected_name)
        assert list(rej) == ["train"] and rej["train"].features == feats["rejected"]
        assert rej["train"].to_list() == [rejection_row(r) for r in rejected]
        counts["rejected"] = {"train": len(rejected)}
    return counts


def run_cli(monkeypatch, *args: str) -> int:
    """Run `speakrl ARGS` in-process (as the console script would) and return its exit code."""
    import sys

    from speakrl import cli

    monkeypatch.setattr(sys, "argv", ["speakrl", *args])
    try:
        cli.main()
    except SystemExit as e:
        return int(e.code or 0)
    return 0
