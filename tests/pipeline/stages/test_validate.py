"""Each validator rejects the defect it exists for, and passes the untouched dialogue."""

import json

import numpy as np
import pytest

from speakrl.pipeline.stages import dialogues, scenarios, validate
from speakrl.schemas import Dialogue, FunctionCall, Message, RunConfig, TurnLabel


@pytest.fixture(scope="module")
def ctx(catalog, sim):
    return validate.Context.build(catalog, sim)


def _one(catalog, sim, kind: str, seed: int = 0) -> Dialogue:
    cfg = RunConfig(n=20, seed=seed, mix={kind: 1.0}, multi_slot_rate=0.0, volunteer_rate=0.0, partial_answer_rate=0.0)
    rows = list(scenarios.run(cfg, catalog, range(20), sim))
    return next(d for d in dialogues.run(cfg, catalog, rows, sim) if len(d.gold_calls) == 1)


def _relabel(messages: list[Message], labels: list[TurnLabel], drop: set[int]) -> tuple[list[Message], list[TurnLabel]]:
    """Remove messages by index and renumber the labels."""
    keep = [i for i in range(len(messages)) if i not in drop]
    new_index = {old: new for new, old in enumerate(keep)}
    return [messages[i] for i in keep], [lab.model_copy(update={"message_index": new_index[lab.message_index]})
                                         for lab in labels if lab.message_index in new_index]


def _without_questions(d: Dialogue) -> Dialogue:
    """The dialogue with every clarification exchange (question + the user's reply) cut out."""
    drop = set()
    for lab in d.labels:
        if lab.act == "clarify":
            drop |= {lab.message_index, lab.message_index + 1}
    messages, labels = _relabel(d.messages, d.labels, drop)
    return d.model_copy(update={"messages": messages, "labels": labels})


def test_untouched_dialogues_pass(catalog, sim, ctx):
    for kind in ("none", "missing_slot", "invalid_value", "conflicting_constraints", "underspecified_value"):
        assert validate.check(_one(catalog, sim, kind), ctx) is None


def test_acting_on_an_invented_value_is_rejected(catalog, sim, ctx):
    d = _one(catalog, sim, "missing_slot")
    reason = validate.grounded(_without_questions(d), ctx)
    assert reason and reason.startswith("ungrounded_value:")
    assert validate.check(_without_questions(d), ctx).startswith("ungrounded_value:")


def test_an_invented_value_in_a_control_is_rejected(catalog, sim, ctx):
    d = _one(catalog, sim, "none")
    i = d.labels[0].message_index
    call = d.messages[i].tool_calls[0]
    args = call.function.args()
    slot = next(k for k, v in args.items() if isinstance(v, str))
    args[slot] = "Zanzibar Nowhere"
    forged = call.model_copy(update={"function": FunctionCall(name=call.function.name, arguments=json.dumps(args))})
    messages = list(d.messages)
    messages[i] = messages[i].model_copy(update={"tool_calls": [forged]})
    assert validate.grounded(d.model_copy(update={"messages": messages}), ctx).startswith("ungrounded_value:")


def test_never_asking_when_a_slot_is_missing_is_rejected(catalog, sim, ctx):
    d = _without_questions(_one(catalog, sim, "missing_slot"))
    assert validate.asks_when_needed(d, ctx).startswith("never_asked:")


def test_asking_in_a_control_is_rejected(catalog, sim, ctx):
    d = _one(catalog, sim, "none")
    question = Message(role="assistant", content="What date would you like?", reasoning_content="Let me check.")
    reply = Message(role="user", content="Whatever you think.")
    messages = [*d.messages[:2], question, reply, *d.messages[2:]]
    labels = [TurnLabel(message_index=2, act="clarify", target_slots=["date"])] + [
        lab.model_copy(update={"message_index": lab.message_index + 2}) for lab in d.labels]
    forged = d.model_copy(update={"messages": messages, "labels": labels})
    assert validate.labels_consistent(forged, ctx) is None
    assert validate.asks_when_needed(forged, ctx).startswith("asked_in_control:")


def test_asking_about_the_wrong_slot_is_rejected(catalog, sim, ctx):
    d = _one(catalog, sim, "missing_slot")
    missing = d.ambiguities[0].slot
    call_args = d.gold_calls[-1].args()
    other = next(k for k in call_args if k != missing)
    labels = [lab.model_copy(update={"target_slots": [other]}) if lab.act == "clarify" else lab for lab in d.labels]
    assert validate.asks_when_needed(d.model_copy(update={"labels": labels}), ctx).startswith("asked_wrong_slot:")


def test_a_question_that_does_not_name_its_slot_is_rejected(catalog, sim, ctx):
    d = _one(catalog, sim, "missing_slot")
    i = next(lab.message_index for lab in d.labels if lab.act == "clarify")
    messages = list(d.messages)
    messages[i] = messages[i].model_copy(update={"content": "Could you tell me more?"})
    assert validate.asks_when_needed(d.model_copy(update={"messages": messages}), ctx).startswith("question_off_target:")


def test_arguments_breaking_the_schema_are_rejected(catalog, sim, ctx):
    d = _one(catalog, sim, "invalid_value")
    slot = d.ambiguities[0].slot
    bad = d.ambiguities[0].detail  # the out-of-catalog value the user first asked for
    args = {**d.gold_calls[-1].args(), slot: bad}
    call = FunctionCall(name=d.gold_calls[-1].name, arguments=json.dumps(args))
    forged = d.model_copy(update={"gold_calls": [*d.gold_calls[:-1], call]})
    assert validate.arguments_valid(forged, ctx).startswith("invalid_arguments:")


def test_tool_results_that_do_not_replay_are_rejected(catalog, sim, ctx):
    d = _one(catalog, sim, "none")
    i = next(i for i, m in enumerate(d.messages) if m.role == "tool")
    result = json.loads(d.messages[i].content)
    result["forged"] = True
    messages = list(d.messages)
    messages[i] = messages[i].model_copy(update={"content": json.dumps(result)})
    assert validate.execution_consistent(d.model_copy(update={"messages": messages}), ctx).startswith("execution_mismatch:")


def test_labels_and_gold_calls_must_match_the_messages(catalog, sim, ctx):
    d = _one(catalog, sim, "missing_slot")
    flipped = [lab.model_copy(update={"act": "answer"}) if lab.act == "tool_call" else lab for lab in d.labels]
    assert validate.labels_consistent(d.model_copy(update={"labels": flipped}), ctx).startswith("label_mismatch:")
    assert validate.gold_calls_match(d.model_copy(update={"gold_calls": []}), ctx).startswith("gold_mismatch:")


def test_a_final_call_that_misses_the_goal_is_rejected(catalog, sim, ctx):
    d = _one(catalog, sim, "none")
    goal = dict(d.goal)
    slot = next(k for k, v in goal.items() if isinstance(v, str))
    goal[slot] = goal[slot] + " (other)"
    assert validate.reaches_goal(d.model_copy(update={"goal": goal}), ctx).startswith("goal_mismatch:")


def test_exact_and_near_duplicates_are_removed_first_kept(catalog, sim):
    # a long opening, so one added word leaves it a near duplicate (a ten-word one would not be)
    a = max((_one(catalog, sim, "missing_slot", seed=s) for s in range(1, 6)), key=lambda d: len(d.messages[1].content))
    b = a.model_copy(update={"id": "copy"})
    messages = list(a.messages)
    messages[1] = messages[1].model_copy(update={"content": messages[1].content + " Thanks."})
    c = a.model_copy(update={"id": "near", "messages": messages})
    other = _one(catalog, sim, "none", seed=2)
    out = list(validate.deduplicate([a, b, c, other], validate.Deduplicator(threshold=0.7)))
    assert out[0] is a and out[3] is other
    assert out[1].check == "duplicate" and out[1].id == "copy"
    assert out[2].check == "near_duplicate" and out[2].row["id"] == "near"


def test_deduplication_with_keys_gives_the_same_result_without_the_text(catalog, sim, monkeypatch):
    """Finalize hands each row's keys from its worker: the rows are then not read again for their text."""
    a = max((_one(catalog, sim, "missing_slot", seed=s) for s in range(1, 6)), key=lambda d: len(d.messages[1].content))
    rows = [a, a.model_copy(update={"id": "copy"}), _one(catalog, sim, "none", seed=2)]
    expected = [getattr(out, "check", None) for out in validate.deduplicate(rows, validate.Deduplicator(threshold=0.7))]
    keys = validate.dedup_keys(iter(rows), threshold=0.7, num_perm=64)

    def unread(row):
        raise AssertionError("dialogue_text computed although the keys were given")

    monkeypatch.setattr(validate, "dialogue_text", unread)
    out = list(validate.deduplicate(rows, validate.Deduplicator(threshold=0.7), keys))
    assert [getattr(o, "check", None) for o in out] == expected == [None, "duplicate", None]


def test_hash_index_keeps_the_first_value_across_merges(monkeypatch):
    monkeypatch.setattr(validate.HashIndex, "MERGE", 4)  # several merges into the sorted arrays
    index = validate.HashIndex()
    keys = [(i * 0x9E3779B97F4A7C15) % 2**64 for i in range(1, 40)]  # spread over the whole 64-bit range
    for i, key in enumerate(keys):
        index.add(key, i)
    for i, key in enumerate(keys):
        index.add(key, 1000 + i)  # known: ignored
    assert len(index) == len(keys) and len(index.keys) >= 36
    assert [index.get(key) for key in keys] == list(range(len(keys)))
    assert index.get(12345) is None and index.get(2**64 - 1) is None


def test_near_duplicates_are_the_candidates_of_datasketch_lsh(catalog, sim):
    # The compact index finds a near duplicate exactly when datasketch's MinHashLSH proposes an earlier row.
    from datasketch import MinHashLSH

    rows = []
    for seed in range(8):
        for kind in ("none", "missing_slot"):
            d = _one(catalog, sim, kind, seed=seed)
            messages = list(d.messages)
            messages[1] = messages[1].model_copy(update={"content": messages[1].content + " Thanks."})
            rows += [d, d.model_copy(update={"messages": messages})]
    dedup = validate.Deduplicator(threshold=0.7)
    lsh = MinHashLSH(threshold=0.7, num_perm=64)
    seen, codes = set(), []
    for i, row in enumerate(rows):
        text = validate.dialogue_text(row)
        mh = dedup.minhash(text)
        proposed = lsh.query(mh)
        reason = dedup.reason(f"r{i}", text)
        code = reason.split(":")[0] if reason else None
        codes.append(code)
        if text in seen:
            assert code == "duplicate"
        elif proposed:
            assert code == "near_duplicate" and reason.rsplit(" ", 1)[1] in proposed
        else:
            assert reason is None
            lsh.insert(f"r{i}", mh)
        seen.add(text)
    assert {"near_duplicate", None} <= set(codes)


def test_dedup_keys_take_the_first_row_before_building_the_minhash(catalog, sim, monkeypatch):
    # In an LLM run the rows come from a stream whose first requests go out when the first row is pulled; building
    # the MinHash imports datasketch and scipy (~0.5 s), which must not hold those requests back.
    events = []
    for name in ("MinHasher", "lsh_bands"):  # what uses datasketch
        monkeypatch.setattr(validate, name, lambda *a, f=getattr(validate, name): events.append("datasketch") or f(*a))

    def rows():
        events.append("first row")
        yield _one(catalog, sim, "none")

    keys = validate.dedup_keys(rows(), threshold=0.7, num_perm=64)
    assert events[0] == "first row" and "datasketch" in events
    assert keys.shape == (1, 1 + len(validate.lsh_bands(0.7, 64)))
    assert validate.dedup_keys(iter([]), threshold=0.7, num_perm=64).shape == (0, keys.shape[1])


@pytest.mark.parametrize("scheme", ["affine32", "legacy"])
def test_minhashes_computed_together_are_datasketchs(catalog, sim, scheme):
    from datasketch import MinHash

    texts = [validate.dialogue_text(_one(catalog, sim, kind, seed)) for kind in ("none", "missing_slot") for seed in range(3)]
    texts += ["", "one", "two words", "exactly three words"]  # fewer shingles than words, or none
    minhash = validate.MinHasher(64)
    minhash.scheme, minhash.permutations = scheme, MinHash(num_perm=64, seed=1, scheme=scheme).permutations
    together = minhash.hashvalues(texts)
    assert together.shape == (len(texts), 64) and together.dtype == np.uint32
    assert [list(row) for row in together] == [list(minhash(text).hashvalues) for text in texts]
    assert len({row.tobytes() for row in together}) == len(set(texts))  # distinct texts, distinct MinHashes


def test_dedup_keys_in_batches_are_each_rows_keys(catalog, sim):
    rows = [_one(catalog, sim, kind, seed) for kind in ("none", "missing_slot") for seed in range(3)]
    dedup = validate.Deduplicator(threshold=0.7, num_perm=64)
    expected = [dedup.keys(validate.dialogue_text(row)) for row in rows]
    assert validate.dedup_keys(iter(rows), threshold=0.7, num_perm=64, batch=4).tolist() == expected  # 4 + 2 rows


def test_rejections_keep_the_row_and_a_readable_reason(catalog, sim, ctx):
    d = _without_questions(_one(catalog, sim, "missing_slot"))
    (r,) = list(validate.run([d], ctx))
    assert r.check == "ungrounded_value" and "never gave" in r.reason
    assert r.row["id"] == d.id and Dialogue.model_validate(r.row) == d


def test_near_duplicate_names_the_kept_row_across_id_pieces(catalog, sim, monkeypatch):
    # The kept ids are stored in pieces of numpy byte strings; a near duplicate still names the row it repeats.
    monkeypatch.setattr(validate._Ids, "PIECE", 2)
    a = max((_one(catalog, sim, "missing_slot", seed=s) for s in range(1, 6)), key=lambda d: len(d.messages[1].content))
    others = [_one(catalog, sim, "none", seed=seed) for seed in range(10, 14)]
    messages = list(a.messages)
    messages[1] = messages[1].model_copy(update={"content": messages[1].content + " Thanks."})
    twin = a.model_copy(update={"id": "twin", "messages": messages})
    out = list(validate.deduplicate([*others[:3], a, others[3], twin], validate.Deduplicator(threshold=0.7)))
    assert [r.id for r in out[:5]] == [d.id for d in [*others[:3], a, others[3]]]
    assert out[5].check == "near_duplicate" and out[5].reason == f"too similar to {a.id}"
