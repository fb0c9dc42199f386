"""Dialogues stage, LLM modes (`dialogues.backend: openai`).

- `paraphrase`: the offline dialogue, with the LLM rewriting user and assistant utterances for
  naturalness. Labels, tool calls and tool results are unchanged; slot values stay verbatim (a rewrite
  that drops one is re-asked, and the validate stage's grounding check rejects any that slips through).
- `full`: the LLM writes the opening request from the scenario's ambiguity plan; an LLM user simulator
  (which sees the hidden goal) talks with an LLM assistant (which sees only the conversation and the
  tools). The assistant answers with a structured turn (reasoning, act, target slots, text or tool call);
  tool calls run on the simulated backends. Labels come from the acts, gold calls from the executed calls.

Optionally (`validate.judge`), an LLM judge rates each clarification question as necessary and targeted;
its verdict is kept on the row, and a failing verdict rejects the row.

Every scenario comes out as exactly one Dialogue or one Rejection (with the raw model output), in order.
`LLMError` (bad key, unknown model, bad request) and `BudgetExceeded` stop the shard: the answers received
so far are cached, so the next run resumes without paying for them again.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import threading
from collections import deque
from collections.abc import Coroutine, Generator, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

import openai
from pydantic import BaseModel, ConfigDict

from speakrl.pipeline.catalog.sim import Simulator
from speakrl.pipeline.catalog.specs import catalog_specs
from speakrl.pipeline.checks import (
    call_matches,
    leaf_values,
    mentioned,
    mentioned_values,
    normalize,
    question_targets,
    slot_label,
)
from speakrl.pipeline.errors import BudgetExceeded, LLMError
from speakrl.pipeline.llm import (
    CACHE_FILE,
    LLM,
    LLMOutputError,
    LLMUnavailable,
    Prompt,
    ResponseCache,
    estimate_tokens,
    hash_template,
    render,
    request_body,
    request_key,
)
from speakrl.pipeline.stages import phrasing
from speakrl.pipeline.stages.dialogues import offered_tools, system_prompt
from speakrl.schemas.catalog import Catalog, Domain
from speakrl.schemas.config import RunConfig
from speakrl.schemas.dialogue import (
    Dialogue,
    FunctionCall,
    JudgeVerdict,
    Message,
    Provenance,
    Rejection,
    Scenario,
    ToolCall,
    ToolSpec,
    TurnLabel,
)

log = logging.getLogger(__name__)

STAGE = "dialogues"
T = TypeVar("T")
JUDGE_STAGE = "judge"
MAX_TURNS = 10  # assistant turns in full mode before the dialogue is given up
TEMPLATES = {
    "paraphrase": ("paraphrase.j2",),
    "full": ("scenario_writer.j2", "assistant.j2", "user_simulator.j2"),
}


# --------------------------------------------------------------------------------------------- structured outputs
class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Opening(_Out):
    message: str


class UserTurn(_Out):
    message: str


class AssistantTurn(_Out):
    reasoning: str
    act: Literal["clarify", "tool_call", "answer"]
    target_slots: list[str]
    content: str | None
    tool_name: str | None
    arguments: str | None  # a JSON object, as the OpenAI API sends tool arguments


class Rewrite(_Out):
    index: int
    text: str


class Paraphrase(_Out):
    utterances: list[Rewrite]


class TurnJudgement(_Out):
    message_index: int
    necessary: bool
    targeted: bool
    reason: str


class Judgement(_Out):
    turns: list[TurnJudgement]
    verdict: Literal["pass", "fail"]
    reason: str


# --------------------------------------------------------------------------------------------- helpers
def said(slot: str, value: Any, texts: Iterable[str]) -> bool:
    """Whether a slot value is said in `texts` (a yes/no preference is said by naming it)."""
    return mentioned(slot_label(slot) if isinstance(value, bool) else value, texts)


def prompt_hash(names: Iterable[str]) -> str:
    """One hash over the templates a row was made with."""
    blob = ",".join(f"{n}:{hash_template(n)}" for n in sorted(names))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _sum(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    """A row's usage: the requests it took, answered now or from the cache alike (a row must not depend on whether
    its run was resumed; what an invocation paid is in the run's usage ledger), and their tokens."""
    return {"requests": a.get("requests", 0) + b.get("requests", 0) + b.get("cached", 0),
            **{k: a.get(k, 0) + b.get(k, 0) for k in ("prompt_tokens", "completion_tokens")}}


def transcript(messages: list[Message], start: int = 0) -> list[dict[str, Any]]:
    """Messages as the templates show them (tool calls flattened to name + arguments), with their indices."""
    out = []
    for i, m in enumerate(messages):
        if i < start or m.role == "system":
            continue
        call = m.tool_calls[0].function if m.tool_calls else None
        out.append({
            "index": i,
            "role": m.role,
            "content": m.content or "",
            "name": m.name,
            "tool_call": {"name": call.name, "arguments": call.arguments} if call else None,
        })
    return out


def plan_items(scenario: Scenario) -> list[str]:
    """The ambiguity plan, as instructions to the writer of the opening request."""
    items = []
    for a in scenario.ambiguities:
        label = slot_label(a.slot)
        if a.type == "missing_slot":
            items.append(f"Leave out the {label} entirely; do not hint at it.")
        elif a.type == "underspecified_value":
            items.append(f'For the {label}, say only "{a.detail}", not an exact value.')
        elif a.type == "invalid_value":
            items.append(f'Ask for "{a.detail}" as the {label}, exactly that.')
        elif a.type == "conflicting_constraints":
            x, y = a.candidates[:2]
            items.append(f'Ask for both "{x}" and "{y}" as the {label}, without saying which matters more.')
        elif a.type == "ambiguous_reference":
            items.append(f"Refer to the {label} only as {a.detail}; do not name it.")
    return items


def opening_problem(scenario: Scenario, text: str) -> str | None:
    """Why an opening request does not follow the plan, or None."""
    for slot, value in scenario.stated.items():
        if not said(slot, value, [text]):
            return f'the message must contain the {slot_label(slot)} "{value}" exactly as written'
    stated = {normalize(v) for v in scenario.stated.values()}
    for a in scenario.ambiguities:
        hidden = scenario.goal.get(a.slot)
        if a.type in ("missing_slot", "underspecified_value", "ambiguous_reference") and hidden is not None \
                and normalize(hidden) not in stated and not isinstance(hidden, bool) and mentioned(hidden, [text]):
            return f'the message must not give the {slot_label(a.slot)} ("{hidden}"); that is what the assistant has to ask about'
        if a.type in ("underspecified_value", "invalid_value") and not mentioned(a.detail, [text]):
            return f'the message must say "{a.detail}" for the {slot_label(a.slot)}'
        if a.type == "conflicting_constraints" and not all(mentioned(c, [text]) for c in a.candidates):
            return f"the message must ask for both {' and '.join(map(repr, a.candidates))} as the {slot_label(a.slot)}"
    return None


def reply_problem(text: str, targets: list[str], scenario: Scenario) -> str | None:
    """A user reply must give (verbatim) the goal value of at least one slot it was asked about."""
    asked = {s: scenario.goal[s] for s in targets if s in scenario.goal}
    if not asked or any(said(s, v, [text]) for s, v in asked.items()):
        return None
    wanted = "; ".join(f"{slot_label(s)}: {v}" for s, v in asked.items())
    return f"the reply must state the asked value(s) exactly as in your goal ({wanted})"


def turn_problem(turn: AssistantTurn, domain: Domain, tool_names: set[str]) -> str | None:
    """Structural problems of an assistant turn (the validate stage judges the rest)."""
    if turn.act == "tool_call":
        if turn.tool_name not in tool_names:
            return f"tool_name must be one of {sorted(tool_names)}"
        try:
            args = json.loads(turn.arguments or "")
        except json.JSONDecodeError:
            return "arguments must be a JSON object string"
        if not isinstance(args, dict):
            return "arguments must be a JSON object string"
        return None
    if not (turn.content or "").strip():
        return f'content must hold the {"question" if turn.act == "clarify" else "message"} for act "{turn.act}"'
    if turn.act == "clarify":
        names = {s.name for s in domain.slots}
        unknown = [s for s in turn.target_slots if s not in names]
        if not turn.target_slots or unknown:
            return f"target_slots must name the argument(s) the question asks about, from {sorted(names)}"
    return None


def keep_values(scenario: Scenario, draft: Dialogue) -> list[str]:
    """Values that must survive a paraphrase verbatim: goal and stated values, ambiguity details and
    candidates, tool arguments and results, and the words the draft says a value in (`Dialogue.aliases`)."""
    values: list[Any] = [*scenario.goal.values(), *scenario.stated.values(), *scenario.search_args.values()]
    for a in scenario.ambiguities:
        values += [a.detail, *a.candidates]
    for m in draft.messages:
        if m.tool_calls:
            values += list(m.tool_calls[0].function.args().values())
        if m.role == "tool" and m.content:
            values += leaf_values(json.loads(m.content))
    values += [words for said in draft.aliases.values() for words in said]  # "no reminder" for reminder="none"
    out: list[str] = []
    for v in values:
        if isinstance(v, (bool, dict, list)) or v is None or not normalize(v) or str(v) in out:
            continue
        out.append(str(v))
    return out


def paraphrase_problem(result: Paraphrase, lines: list[dict[str, Any]], slots: dict[str, Any]) -> str | None:
    got = {r.index: r.text for r in result.utterances}
    want = [line["index"] for line in lines]
    if sorted(got) != sorted(want):
        return f"give exactly one entry for each line index {want}"
    for line in lines:
        text = got[line["index"]]
        if not text.strip():
            return f"line [{line['index']}] is empty"
        kept = mentioned_values(line["keep"], text)
        lost = [v for v in line["keep"] if v not in kept]
        if lost:
            return f'line [{line["index"]}] must contain "{lost[0]}" exactly as written'
        targets = line.get("targets") or []
        specs = [slots[s] for s in targets if s in slots]
        if specs and not question_targets(text, specs):
            return f"line [{line['index']}] must still clearly ask about the {', '.join(slot_label(s) for s in targets)}"
    return None


# --------------------------------------------------------------------------------------------- modes
class _Row:
    """Accumulates the usage of one row's requests."""

    def __init__(self) -> None:
        self.usage = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0}

    async def ask(self, llm: LLM, prompt: Prompt, **kwargs: Any) -> Any:
        try:
            result = await llm.complete(prompt, **kwargs)
        except LLMOutputError as e:
            self.usage = _sum(self.usage, e.usage)
            raise
        self.usage = _sum(self.usage, result.usage)
        return result.parsed


def _provenance(llm: LLM, scenario: Scenario, draft: Dialogue | None, templates: Iterable[str], usage: dict[str, int]) -> Provenance:
    versions = dict(draft.provenance.versions) if draft else {}
    versions["openai"] = openai.__version__
    return Provenance(backend="openai", model=llm.model, prompt_hash=prompt_hash(templates), seed=scenario.seed,
                      versions=versions, usage=usage)


def writer_prompt(scenario: Scenario, catalog: Catalog) -> Prompt:
    """The scenario writer's prompt: the opening request from the scenario's ambiguity plan."""
    domain = catalog.domain(scenario.domain)
    return render("scenario_writer.j2", persona=scenario.persona, style=scenario.style,
                  intent=phrasing.intent(domain.tool(scenario.tool)), domain_description=domain.description,
                  stated=scenario.stated, plan=plan_items(scenario))


def paraphrase_prompt(scenario: Scenario, draft: Dialogue) -> tuple[Prompt, list[dict[str, Any]]]:
    """The paraphrase prompt and its lines (index, role, text, values to keep, slots a question asks about)."""
    keep = keep_values(scenario, draft)
    targets = {lab.message_index: lab.target_slots for lab in draft.labels if lab.act == "clarify"}
    lines = [
        {"index": i, "role": m.role, "text": m.content, "keep": mentioned_values(keep, m.content),
         "targets": targets.get(i, [])}
        for i, m in enumerate(draft.messages)
        if m.role in ("user", "assistant") and m.content
    ]
    return render("paraphrase.j2", persona=scenario.persona, style=scenario.style, utterances=lines), lines


def assistant_prompt(system: str, specs: list[ToolSpec], messages: list[Message]) -> Prompt:
    """The assistant's prompt: its system prompt, the tools and the conversation; never the hidden goal."""
    return render("assistant.j2", system_prompt=system, tools=[t.model_dump(mode="json") for t in specs],
                  conversation=transcript(messages))


def user_prompt(scenario: Scenario, catalog: Catalog, messages: list[Message]) -> Prompt:
    """The user simulator's prompt: persona, the hidden goal, the conversation."""
    domain = catalog.domain(scenario.domain)
    return render("user_simulator.j2", persona=scenario.persona, style=scenario.style,
                  intent=phrasing.intent(domain.tool(scenario.tool)), goal=scenario.goal, conversation=transcript(messages))


def judge_prompt(dialogue: Dialogue) -> Prompt:
    """The judge's prompt: tools, the dialogue with message indices, and which turns are questions."""
    questions = [f"[{lab.message_index}]" for lab in dialogue.labels if lab.act == "clarify"]
    return render("judge.j2", tools=[t.model_dump(mode="json") for t in dialogue.tools],
                  conversation=transcript(dialogue.messages), questions=questions)


async def paraphrase_dialogue(cfg: RunConfig, llm: LLM, scenario: Scenario, draft: Dialogue, catalog: Catalog) -> Dialogue:
    """The offline draft with its user and assistant utterances rewritten; everything else unchanged."""
    row = _Row()
    prompt, lines = paraphrase_prompt(scenario, draft)
    slots = {s.name: s for s in catalog.domain(scenario.domain).slots}
    result = await row.ask(llm, prompt, stage=STAGE, schema=Paraphrase, sampling=cfg.dialogues,
                           check=lambda p: paraphrase_problem(p, lines, slots))
    texts = {r.index: r.text.strip() for r in result.utterances}
    messages = [m.model_copy(update={"content": texts[i]}) if i in texts else m for i, m in enumerate(draft.messages)]
    return draft.model_copy(update={
        "messages": messages,
        "provenance": _provenance(llm, scenario, draft, TEMPLATES["paraphrase"], row.usage),
    })


async def full_dialogue(cfg: RunConfig, llm: LLM, scenario: Scenario, draft: Dialogue | None, sim: Simulator,
                        catalog: Catalog) -> Dialogue:
    """A dialogue written by LLMs end to end, with tool calls run on the simulator."""
    row = _Row()
    domain = catalog.domain(scenario.domain)
    tool = domain.tool(scenario.tool)
    specs = offered_tools(catalog_specs(catalog)[scenario.domain], scenario)  # unsupported: the needed tool is withheld
    tool_names = {s.name for s in specs}
    opening = await row.ask(llm, writer_prompt(scenario, catalog), stage=STAGE, schema=Opening, sampling=cfg.dialogues,
                            check=lambda o: opening_problem(scenario, o.message))
    # The published system prompt is the offline one, so rows of both backends look alike.
    system = draft.messages[0].content if draft and draft.messages[0].role == "system" else system_prompt(domain, scenario.now)
    messages = [Message(role="system", content=system), Message(role="user", content=opening.message.strip())]
    labels: list[TurnLabel] = []
    calls: list[FunctionCall] = []
    last: dict[str, Any] | None = None
    for _ in range(MAX_TURNS):
        prompt = assistant_prompt(system, specs, messages)
        turn: AssistantTurn = await row.ask(llm, prompt, stage=STAGE, schema=AssistantTurn, sampling=cfg.dialogues,
                                            check=lambda t: turn_problem(t, domain, tool_names))
        index = len(messages)
        if turn.act == "tool_call":
            args = json.loads(turn.arguments or "{}")
            call = FunctionCall(name=turn.tool_name or "", arguments=json.dumps(args, ensure_ascii=False))
            call_id = f"call_{len(calls)}"
            labels.append(TurnLabel(message_index=index, act="tool_call"))
            messages.append(Message(role="assistant", reasoning_content=turn.reasoning,
                                    tool_calls=[ToolCall(id=call_id, function=call)]))
            calls.append(call)
            last = sim.execute(call.name, args)
            messages.append(Message(role="tool", content=json.dumps(last, ensure_ascii=False), tool_call_id=call_id, name=call.name))
        elif turn.act == "clarify":
            labels.append(TurnLabel(message_index=index, act="clarify", target_slots=turn.target_slots))
            messages.append(Message(role="assistant", content=(turn.content or "").strip(), reasoning_content=turn.reasoning))
            targets = list(turn.target_slots)
            reply = await row.ask(llm, user_prompt(scenario, catalog, messages), stage=STAGE, schema=UserTurn, sampling=cfg.dialogues,
                                  check=lambda u: reply_problem(u.message, targets, scenario))
            messages.append(Message(role="user", content=reply.message.strip()))
        else:
            labels.append(TurnLabel(message_index=index, act="answer"))
            messages.append(Message(role="assistant", content=(turn.content or "").strip(), reasoning_content=turn.reasoning))
            break
    else:
        raise LLMOutputError("llm_no_answer", f"the assistant did not finish within {MAX_TURNS} turns",
                             json.dumps([m.model_dump(mode="json") for m in messages]), row.usage)
    final = calls[-1] if calls else None
    reached = (
        final is not None and final.name == tool.name and last is not None and "error" not in last
        and call_matches(final.name, final.args(), tool.name, scenario.goal, tool.optional)
    )
    return Dialogue(
        id=f"d-{scenario.id}",
        scenario_id=scenario.id,
        domain=scenario.domain,
        tools=specs,
        messages=messages,
        labels=labels,
        gold_calls=calls,
        goal=scenario.goal,
        ambiguities=scenario.ambiguities,
        needs_clarification=scenario.needs_clarification,
        outcome="completed" if reached else "failed",
        provenance=_provenance(llm, scenario, draft, TEMPLATES["full"], row.usage),
    )


async def judge_dialogue(cfg: RunConfig, llm: LLM, dialogue: Dialogue) -> tuple[JudgeVerdict, str]:
    """The judge's verdict on a dialogue's clarification questions, and its raw answer."""
    prompt = judge_prompt(dialogue)
    wanted = {lab.message_index for lab in dialogue.labels if lab.act == "clarify"}

    def covers(j: Judgement) -> str | None:
        got = {t.message_index for t in j.turns}
        return None if got == wanted else f"turns must judge exactly the questions {sorted(wanted) or 'none'}"

    sampling = cfg.dialogues.model_copy(update={"temperature": 0.0})  # a judge should be as repeatable as it can
    result = await llm.complete(prompt, stage=JUDGE_STAGE, schema=Judgement, sampling=sampling, check=covers)
    j: Judgement = result.parsed
    bad = [t for t in j.turns if not (t.necessary and t.targeted)]
    verdict = "fail" if bad or j.verdict == "fail" else "pass"
    reason = j.reason if not bad else f"turn {bad[0].message_index}: {bad[0].reason}"
    return JudgeVerdict(verdict=verdict, reason=reason, model=llm.model,
                        turns=[t.model_dump() for t in j.turns]), result.content or ""


# --------------------------------------------------------------------------------------------- stage entry point
def _rejection(scenario: Scenario, draft: Dialogue | None, check: str, reason: str, raw: str | None,
               row: dict[str, Any] | None = None) -> Rejection:
    if row is None:
        row = draft.model_dump(mode="json") if draft is not None else scenario.model_dump(mode="json")
    return Rejection(id=f"d-{scenario.id}", stage=STAGE, check=check, reason=reason, row=row, raw=raw)


async def _one(cfg: RunConfig, llm: LLM, scenario: Scenario, draft: Dialogue | None, sim: Simulator,
               catalog: Catalog) -> Dialogue | Rejection:
    try:
        if cfg.dialogues.mode == "paraphrase":
            if draft is None:
                return _rejection(scenario, None, "no_draft", "paraphrase mode needs the offline dialogue of this scenario", None)
            dialogue = await paraphrase_dialogue(cfg, llm, scenario, draft, catalog)
        else:
            dialogue = await full_dialogue(cfg, llm, scenario, draft, sim, catalog)
    except LLMUnavailable:
        raise  # an outage, not a bad row: the run stops and a re-run retries it
    except LLMOutputError as e:
        return _rejection(scenario, draft, e.check, e.reason, e.raw)
    if cfg.validate_.judge:
        try:
            verdict, raw = await judge_dialogue(cfg, llm, dialogue)
        except LLMUnavailable:
            raise
        except LLMOutputError as e:
            return _rejection(scenario, draft, f"judge_{e.check}", e.reason, e.raw, row=dialogue.model_dump(mode="json"))
        dialogue = dialogue.model_copy(update={"judge": verdict})
        if verdict.verdict == "fail":
            return _rejection(scenario, draft, "judge_rejected", verdict.reason, raw, row=dialogue.model_dump(mode="json"))
    return dialogue


def run(cfg: RunConfig, scenarios: list[Scenario], drafts: list[Dialogue], llm: LLM, simulator: Simulator,
        catalog: Catalog) -> list[Dialogue | Rejection]:
    """One Dialogue or Rejection per scenario, in order, from the LLM mode in `cfg.dialogues.mode`.

    Raises `LLMError` (the endpoint refuses requests: bad key, unknown model, bad request; or it kept failing
    after every retry) and `BudgetExceeded`; everything answered before is cached, so a re-run resumes.
    """
    by_scenario = {d.scenario_id: d for d in drafts}  # a scenario without a draft is rejected (`no_draft`)
    return list(run_stream(cfg, scenarios, [by_scenario.get(s.id) for s in scenarios], llm, simulator, catalog))


def run_stream(cfg: RunConfig, scenarios: Iterable[Scenario], drafts: Iterable[Dialogue | None], llm: LLM,
               simulator: Simulator, catalog: Catalog) -> Iterator[Dialogue | Rejection]:
    """`run` as a pipeline (`stream`): each scenario and its offline draft (one each, in the same order) are pulled
    as requests go out, and each row is yielded as soon as it and the rows before it are done."""
    jobs = (_one(cfg, llm, s, d, simulator, catalog) for s, d in zip(scenarios, drafts, strict=True))
    return stream(llm, jobs)


def judge(cfg: RunConfig, dialogues: list[Dialogue], llm: LLM) -> list[Dialogue | Rejection]:
    """The LLM judge as a validator over any dialogues (offline ones too): each comes back with its verdict
    kept on the row, or as a `judge_rejected` Rejection. Same errors as `run`."""
    return list(judge_stream(cfg, dialogues, llm))


def judge_stream(cfg: RunConfig, dialogues: Iterable[Dialogue], llm: LLM) -> Iterator[Dialogue | Rejection]:
    """`judge` as a pipeline (`stream`): dialogues are pulled as requests go out."""

    async def one(d: Dialogue) -> Dialogue | Rejection:
        try:
            verdict, raw = await judge_dialogue(cfg, llm, d)
        except LLMUnavailable:
            raise
        except LLMOutputError as e:
            return Rejection(id=d.id, stage="validate", check=f"judge_{e.check}", reason=e.reason,
                             row=d.model_dump(mode="json"), raw=e.raw)
        judged = d.model_copy(update={"judge": verdict})
        if verdict.verdict == "fail":
            return Rejection(id=d.id, stage="validate", check="judge_rejected", reason=verdict.reason,
                             row=judged.model_dump(mode="json"), raw=raw)
        return judged

    return stream(llm, (one(d) for d in dialogues))


def stream(llm: LLM, jobs: Iterable[Coroutine[Any, Any, T]], window: int | None = None) -> Iterator[T]:
    """Run row jobs on the LLM's loop and yield their results in order, as a pipeline: the next jobs are made
    (scenarios, drafts, prompts) and the results used (validation) in this thread while the requests of up to
    `window` jobs are in flight (default: twice the endpoint's concurrency, so no slot waits on this thread).

    A run-stopping error (`LLMError`, `BudgetExceeded`, an outage) starts no new job; it is raised once every job
    started has finished (and been cached): the first `LLMError` or `BudgetExceeded` in job order, else the outage."""
    window = window or 2 * llm.endpoint.max_concurrency
    pending: deque[concurrent.futures.Future[T]] = deque()
    stopped = threading.Event()  # set from the loop thread as soon as any job fails

    def note(future: concurrent.futures.Future[T]) -> None:
        if not future.cancelled() and future.exception() is not None:
            stopped.set()

    errors: list[BaseException] = []
    jobs = iter(jobs)
    try:
        while not errors:
            # Fill the window before each row is used: rows that finished together are validated one by one, and
            # the slots each one frees are taken again at once.
            while len(pending) < window and not stopped.is_set() and (job := next(jobs, None)) is not None:
                future = llm.submit(job)
                future.add_done_callback(note)
                pending.append(future)
            if not pending:
                break
            error = pending[0].exception()  # waits for the next row in order
            if error is not None:
                errors.append(error)
            else:
                yield pending.popleft().result()
    except (KeyboardInterrupt, SystemExit):
        for future in pending:  # stopped by the user: drop what is still queued, answered requests stay cached
            future.cancel()
        raise
    finally:
        if isinstance(jobs, Generator):
            jobs.close()
        concurrent.futures.wait(pending)  # every request in flight finishes (and is cached) before we go on
        errors += [e for f in pending if not f.cancelled() and (e := f.exception()) is not None and e not in errors]
    if errors:
        raise _run_stopping(errors, llm)


def _run_stopping(errors: list[BaseException], llm: LLM) -> BaseException:
    """The error a run stops with, of the errors of its failed jobs (in job order)."""
    for e in errors:
        if isinstance(e, (LLMError, BudgetExceeded)):
            return e
    for e in errors:
        if isinstance(e, LLMUnavailable):
            return LLMError(f"{llm.base_url} kept failing: {e.reason}; the answers received so far are cached, "
                            "so running the same command again resumes")
    return errors[0]


def dry_run(cfg: RunConfig, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """`speakrl run --dry-run`: build the run's scenarios and offline drafts (fast, no network) and estimate
    the LLM requests, tokens and cost, counting paraphrase requests already in the cache at `cache_dir`."""
    from speakrl.pipeline.catalog import load_catalog
    from speakrl.pipeline.stages import dialogues as offline
    from speakrl.pipeline.stages import scenarios as scenario_stage

    catalog = load_catalog(cfg.catalog, cfg.slot_values)
    sim = Simulator(catalog)
    scen = list(scenario_stage.run(cfg, catalog, range(cfg.n), sim))
    drafts = list(offline.run(cfg, catalog, scen, sim))
    path = Path(cache_dir) / CACHE_FILE if cache_dir is not None else None
    cache = ResponseCache(path) if path is not None and path.exists() else None
    try:
        return estimate(cfg, scen, drafts, catalog, cache=cache)
    finally:
        if cache is not None:
            cache.close()


def estimate(cfg: RunConfig, scenarios: list[Scenario], drafts: list[Dialogue], catalog: Catalog,
             llm: LLM | None = None, cache: ResponseCache | None = None) -> dict[str, Any]:
    """A dry-run estimate of requests and tokens (and cost, when prices are known) without sending anything.

    Paraphrase mode renders each real prompt; full mode replays the offline draft's conversation through the
    assistant and user templates (an LLM dialogue has about as many turns as the offline one). Re-asks are not
    counted. Requests already in the cache (`llm`'s, or `cache`) are counted as cached.
    """
    if llm is not None and cache is None:
        cache = llm.cache
    json_schema = llm.json_schema_supported if llm is not None else True
    base_url = cfg.endpoint.base_url.rstrip("/")
    by_scenario = {d.scenario_id: d for d in drafts}
    requests = cached = prompt_tokens = completion_tokens = 0
    for scenario in scenarios:
        draft = by_scenario.get(scenario.id)
        if draft is None:
            continue
        if cfg.dialogues.mode == "paraphrase":
            prompt, lines = paraphrase_prompt(scenario, draft)
            requests += 1
            prompt_tokens += estimate_tokens(prompt.messages)
            completion_tokens += sum(len(line["text"]) for line in lines) // 4 + 10 * len(lines)
            if cache is not None:
                body = request_body(cfg.endpoint.model, prompt.messages, cfg.dialogues, Paraphrase, json_schema)
                cached += cache.get(request_key(base_url, body, prompt.template, prompt.template_hash)) is not None
        else:
            specs = catalog_specs(catalog)[scenario.domain]
            requests += 1  # the opening
            prompt_tokens += estimate_tokens(writer_prompt(scenario, catalog).messages)
            completion_tokens += 40
            for i, m in enumerate(draft.messages):
                if m.role == "assistant":
                    p = assistant_prompt(draft.messages[0].content or "", specs, draft.messages[:i])
                    requests += 1
                    prompt_tokens += estimate_tokens(p.messages)
                    completion_tokens += 80
                elif m.role == "user" and i > 1:
                    p = user_prompt(scenario, catalog, draft.messages[:i])
                    requests += 1
                    prompt_tokens += estimate_tokens(p.messages)
                    completion_tokens += 30
        if cfg.validate_.judge:
            p = judge_prompt(draft)
            requests += 1
            prompt_tokens += estimate_tokens(p.messages)
            completion_tokens += 60
    ep = cfg.endpoint
    cost = None
    if ep.price_input_per_mtok is not None and ep.price_output_per_mtok is not None:
        cost = round((prompt_tokens * ep.price_input_per_mtok + completion_tokens * ep.price_output_per_mtok) / 1e6, 4)
    return {
        "mode": cfg.dialogues.mode,
        "model": ep.model,
        "scenarios": len(scenarios),
        "requests": requests,
        "cached": cached,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "cost": cost,
    }
