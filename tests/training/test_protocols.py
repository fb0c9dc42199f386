import random

import pytest

from speakrl.training.protocols import PROTOCOLS, parse, render_call, render_speakrl

CALL = '<tool_call>\n{"name": "reserve_table", "arguments": {"party_size": 4, "city": "Oakland"}}\n</tool_call>'


@pytest.mark.parametrize(
    ("text", "act", "score"),
    [
        ("<think>no city</think>\n<clarify>Yes\nWhich city?</clarify>", "clarify", 1.0),
        ("<think>no city</think>\n<clarify>Which city?</clarify>", "clarify", 0.75),  # no decision token
        ("<think>no city</think>\n<clarify>Yes</clarify>", "clarify", 0.5),  # decides to ask, asks nothing
        # The decision token is read even when the block never closes (a runaway question): as asking, format 0.25.
        ("<think></think>\n<clarify>Yes\n<tool_call>\n{\"name\": \"x-x-x-x", "clarify", 0.25),
        ("<think></think>\n<clarify>No\n<tool_call>\n{\"name\": \"x-x-x-x", None, 0.25),
        (f"<think>ok</think>\n<clarify>No</clarify>\n{CALL}", "tool_call", 1.0),
        ("<think>ok</think><clarify>No</clarify>Your table is booked.<|im_end|>", "answer", 1.0),
        (f"<clarify>No</clarify>{CALL}", "tool_call", 0.75),  # no think
        (f"<think>ok</think><clarify>Yes\nWhich city?</clarify>{CALL}", "clarify", 0.5),  # asks and acts in one turn
        ('<think>ok</think><clarify>No</clarify><tool_call>{"name": "reserve_table", "arguments": {"party', "tool_call", 0.75),
        ("<think>ok</think><clarify>No</clarify>", None, 0.5),  # says no question, then does nothing
        ("Your table is booked.", None, 0.0),  # free text is not an act in this protocol
        # A call without its opening tag is a broken call, not an answer (GRPO found this hole once).
        ('<think></think><clarify>No</clarify>\n{"name": "book", "arguments": {"a": "x"}}\n</tool_call>', "tool_call", 0.75),
        ("<think></think><clarify>No</clarify>Booked.</tool_call>", "answer", 0.75),  # stray tag
        ("<think><think></clarify><clarify>", None, 0.0),
        ("", None, 0.0),
    ],
)
def test_speakrl_parse_table(text, act, score):
    p = parse(text, "speakrl")
    assert p.act == act
    assert p.format_score == score


def test_speakrl_parse_fields():
    p = parse(f"<think>all given</think><clarify>No</clarify>{CALL}")
    assert (p.call_name, p.call_args, p.think) == ("reserve_table", {"party_size": 4, "city": "Oakland"}, "all given")
    truncated = parse('<clarify>No</clarify><tool_call>{"name": "reserve_table", "arguments": {"party')
    assert truncated.call_name == "reserve_table" and truncated.call_args is None and "tool_call_not_json" in truncated.problems


@pytest.mark.parametrize(
    ("text", "act"),
    [
        (CALL, "tool_call"),
        ("<think>\n\n</think>\n\nWhich city should I search in?", "clarify"),
        ("Booked: confirmation RES-1.", "answer"),
        ('{"name": "f", "arguments": {}}', "tool_call"),  # untagged: read as a broken call
        ("", None),
    ],
)
def test_native_parse_table(text, act):
    assert parse(text, "native").act == act


def test_structured_tool_calls_from_an_api():
    p = parse("", "native", tool_calls=[{"function": {"name": "f", "arguments": '{"a": 1}'}}])
    assert (p.act, p.call_name, p.call_args) == ("tool_call", "f", {"a": 1})
    bad = parse("", "native", tool_calls=[{"function": {"name": "f", "arguments": "{not json"}}])
    assert bad.act == "tool_call" and bad.call_args is None and bad.format_score < 1


def test_conversational_completions_are_read():
    msgs = [{"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}]
    p = parse(msgs, "native")
    assert (p.act, p.call_args) == ("tool_call", {"a": 1})


def test_render_roundtrip():
    text = render_speakrl("tool_call", "why", None, ("f", '{"a": 1}'))
    p = parse(text)
    assert (p.act, p.call_name, p.call_args, p.format_score) == ("tool_call", "f", {"a": 1}, 1.0)
    assert parse(render_speakrl("clarify", "", "Which one?", None)).question == "Which one?"
    assert render_call("f", {"a": 1}).startswith("<tool_call>")


def test_parser_never_crashes_on_noise():
    rng = random.Random(0)
    pieces = ["<think>", "</think>", "<clarify>", "</clarify>", "No", "<tool_call>", "</tool_call>", "{", "}", '"name"', ":",
              '"arguments"', "[", "]", "?", "hello", "\n", "<|im_end|>", "null", "1", ","]
    for _ in range(2000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 25)))
        for protocol in PROTOCOLS:
            p = parse(text, protocol)
            assert p.act in (None, "clarify", "tool_call", "answer")
            assert 0.0 <= p.format_score <= 1.0
    for odd in (None, 123, {"content": None}, [{"role": "tool", "content": "x"}], [None]):
        assert parse(odd).act is None


def test_unknown_protocol():
    with pytest.raises(ValueError, match="valid: speakrl, native"):
        parse("x", "xml")


def test_decision_is_one_token_at_one_position(splits):
    """Asking and acting part at exactly one token right after `<clarify>`, in gold targets of every act, for the
    tokenizer the tiny recipe builds (BPE trained on rendered prompts and gold turns, as `train.build_base` does)."""
    from speakrl.training.data import decision_rows
    from speakrl.training.protocols import decision_tokens
    from speakrl.training.tiny import build_tokenizer, training_texts

    tokenizer = build_tokenizer(training_texts(decision_rows(splits["train"]), "speakrl", limit=400), vocab_size=1024)
    prefix, ask, act = decision_tokens(tokenizer)
    assert ask != act and tokenizer.decode(prefix).endswith("<clarify>")
    assert tokenizer.decode([ask]).strip() == "Yes" and tokenizer.decode([act]).strip() == "No"
    for text, token in [
        (render_speakrl("clarify", "", "How many people will be joining?", None), ask),
        (render_speakrl("clarify", "", "Nopa or Zuni?", None), ask),
        (render_speakrl("tool_call", "", None, ("f", '{"a": 1}')), act),
        (render_speakrl("answer", "", "Booked.", None), act),
    ]:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert ids[: len(prefix)] == prefix and ids[len(prefix)] == token
