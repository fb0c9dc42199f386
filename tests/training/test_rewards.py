import json
import random

import pytest

from speakrl.pipeline.errors import ConfigError
from speakrl.training.config import load_recipe
from speakrl.training.data import decision_rows
from speakrl.training.protocols import render_speakrl
from speakrl.training.rewards import (
    REWARDS,
    answer_reward,
    clarify_reward,
    format_reward,
    get_rewards,
    question_reward,
    tool_call_reward,
    turn_efficiency_reward,
)

SLOTS = json.dumps([
    {"name": "restaurant_name", "description": "Name of the restaurant"},
    {"name": "party_size", "description": "Number of people"},
    {"name": "time", "description": "Time of the reservation"},
])
GOLD_ARGS = '{"restaurant_name": "Nopa", "party_size": 4, "time": "7 pm"}'


def cols(n, **kw):
    base = dict(act=["tool_call"] * n, target_slots=[[]] * n, slots=[SLOTS] * n, is_control=[False] * n,
                gold_name=["reserve_table"] * n, gold_args=[GOLD_ARGS] * n, defaults=['{"seating": "indoor"}'] * n,
                user_texts=[["A table at Nopa for 4 at 7 pm"]] * n, goal=[GOLD_ARGS] * n, gold_content=[""] * n,
                last_tool_result=[""] * n, protocol=["speakrl"] * n)
    base.update({k: [v] * n for k, v in kw.items()})
    return base


def call(args, name="reserve_table"):
    return f'<think>t</think><clarify>No</clarify><tool_call>{{"name": "{name}", "arguments": {args}}}</tool_call>'


MALFORMED = ["", None, "<clarify>", "<tool_call>{", "</think></think>", "<clarify>No</clarify><tool_call>[1, 2]</tool_call>",
             '<clarify>No</clarify><tool_call>{"name": 3}</tool_call>', "\x00\x01", "<clarify>No</clarify><tool_call>{\"name\": \"x\", \"arguments\": \"{\"}</tool_call>"]


def test_tool_call_reward_table():
    completions = [
        call(GOLD_ARGS),
        call('{"restaurant_name": "Nopa", "party_size": 4, "time": "7 pm", "seating": "indoor"}'),  # explicit default
        call('{"restaurant_name": "Nopa", "party_size": 4}'),  # one slot missing
        call('{"restaurant_name": "Nopa", "party_size": 4, "time": "9 pm"}'),  # a value the user never said
        call(GOLD_ARGS, name="cancel_reservation"),  # wrong tool
        "<think>t</think><clarify>No</clarify>Booked.",  # no call
        "<think>t</think><clarify>Yes\nWhat time?</clarify>",  # asks instead: clarify's mistake, not scored here
    ]
    r = tool_call_reward(completions, **cols(len(completions)))
    assert r[0] == r[1] == 1.0
    assert 0.0 < r[3] < r[2] < 1.0  # missing a slot beats inventing one
    assert 0.0 < r[4] < r[2]
    assert r[5] == -1.0  # not calling at all is worse than any readable call
    assert r[6] is None
    assert tool_call_reward(['<clarify>No</clarify><tool_call>{"name": "x"', "<clarify>No</clarify>Sure."], **cols(2)) == [-0.5, -1.0]


def test_clarify_and_question_reward_tables():
    ask_table = "<think>t</think><clarify>Yes\nWhich restaurant would you like?</clarify>"
    ask_other = "<think>t</think><clarify>Yes\nHow many people?</clarify>"
    needed = cols(4, act="clarify", target_slots=["restaurant_name"])
    completions = [ask_table, ask_other, call(GOLD_ARGS), "junk"]
    assert clarify_reward(completions, **needed) == [1.0, 1.0, -1.0, -1.0]  # the decision only
    assert question_reward(completions, **needed) == [1.0, 0.0, None, None]  # the question's target, when one is asked
    for act in ("tool_call", "answer"):
        assert clarify_reward([ask_table, call(GOLD_ARGS), "<clarify>No</clarify>Done."], **cols(3, act=act)) == [-1.0, 1.0, 1.0]
        assert question_reward([ask_table], **cols(1, act=act)) == [None]


def test_answer_and_efficiency_tables():
    result = '{"status": "confirmed", "confirmation_id": "RES-00000042", "restaurant_name": "Nopa"}'
    c = cols(3, act="answer", gold_content="Done! Nopa, confirmation RES-00000042.", last_tool_result=result)
    answers = ["<think>t</think><clarify>No</clarify>Booked Nopa, confirmation RES-00000042.",
               "<think>t</think><clarify>No</clarify>Booked Nopa.", call(GOLD_ARGS)]
    assert answer_reward(answers, **c) == [1.0, 0.5, 0.0]
    assert tool_call_reward(answers, **c) == [None] * 3
    c = cols(3, act="clarify", user_texts=["A table at Nopa"], goal=GOLD_ARGS)
    asks = ["<clarify>Yes\nHow many people, and what time?</clarify>", "<clarify>Yes\nWhich restaurant?</clarify>",
            "<clarify>Yes\nok?</clarify>"]
    assert turn_efficiency_reward(asks, **c) == [0.0, -1.0, -0.5]
    assert turn_efficiency_reward(asks, **cols(3)) == [None] * 3  # a needless question is clarify's to score


def _weighted(completions, columns, names, weights):
    """Each completion's total reward as TRL sums it: weighted, None left out (nansum)."""
    per = [REWARDS[n](completions, **columns) for n in names]
    return [sum(w * r[i] for w, r in zip(weights, per) if r[i] is not None) for i in range(len(completions))]


@pytest.mark.parametrize("recipe", ["tiny-cpu", "qwen3-1.7b", "multi-gpu"])
def test_over_and_under_asking_cost_the_same(recipe, splits):
    """On every kind of row, the gold completion minus the completion with the wrong decision (a question where an
    action is due, an action where a question is due) is the same total loss, so over the act mix of the data the
    two mistakes cost the same in expectation whatever the mix is."""
    import yaml

    from speakrl.training.config import recipe_path

    cfg = yaml.safe_load(recipe_path(recipe).read_text())  # the GPU recipes cannot be constructed on this machine
    names, weights = cfg["reward_funcs"], cfg["reward_weights"]
    rows = decision_rows(splits["train"])[:150]
    by_act = {act: [r for r in rows if r["act"] == act] for act in ("clarify", "tool_call", "answer")}
    assert all(by_act.values())
    losses = {}
    for act, part in by_act.items():
        columns = {k: [r[k] for r in part] for k in part[0]}
        columns["protocol"] = ["speakrl"] * len(part)
        gold = [render_speakrl(r["act"], "", r["gold_content"], (r["gold_name"], r["gold_args"]) if r["gold_name"] else None) for r in part]
        if act == "clarify":  # the wrong decision: act at once (the gold dialogue's final call)
            wrong = [call(GOLD_ARGS)] * len(part)
        else:  # the wrong decision: a well-formed question about one of the tool's slots
            wrong = [render_speakrl("clarify", "", f"Which {json.loads(r['slots'])[0]['name'].replace('_', ' ')}?", None) for r in part]
        g = _weighted(gold, columns, names, weights)
        w = _weighted(wrong, columns, names, weights)
        losses[act] = sorted({round(a - b, 4) for a, b in zip(g, w)})
    # Gold completions score the maximum on every quality reward, so each row loses exactly the same.
    assert losses["clarify"] == losses["tool_call"] == losses["answer"], losses
    assert len(losses["clarify"]) == 1 and losses["clarify"][0] > 0


@pytest.mark.parametrize("name", list(REWARDS))
def test_malformed_completions_score_low_and_never_crash(name):
    fn = REWARDS[name]
    for act in ("clarify", "tool_call", "answer"):
        c = cols(len(MALFORMED), act=act, target_slots=["time"] if act == "clarify" else [])
        scores = fn(MALFORMED, **c)
        assert len(scores) == len(MALFORMED)
        if name == "clarify":  # the decision alone: a broken call still decided to act, which tool_call scores
            from speakrl.training.protocols import parse

            decided = [parse(m).act is not None for m in MALFORMED]
            assert all(s == -1.0 for s, d in zip(scores, decided) if not d or act == "clarify"), (act, scores)
            continue
        assert all(s is None or s <= 0.5 for s in scores), (act, scores)
        if name in ("clarify", "tool_call"):
            assert all(s is None or s <= 0.0 for s in scores if s != 0.5), (act, scores)


def test_rewards_survive_random_noise_and_missing_columns():
    rng = random.Random(1)
    alphabet = ['<think>', '</think>', '<clarify>', '</clarify>', 'No', '<tool_call>', '</tool_call>', '{"name": "reserve_table"',
                ', "arguments": {', '"time": "7 pm"', '}', '}', 'Which time?', ' ']
    noise = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(300)]
    for fn in REWARDS.values():
        assert len(fn(noise, **cols(len(noise)))) == len(noise)
        assert len(fn(noise[:3])) == 3  # no columns at all: defaults, no crash


def test_gold_completions_score_best_on_real_rows(splits):
    rows = decision_rows(splits["train"])[:120]
    for act in ("clarify", "tool_call", "answer"):
        assert any(r["act"] == act for r in rows)
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    columns["protocol"] = ["speakrl"] * len(rows)
    golds = [render_speakrl(r["act"], r["gold_reasoning"], r["gold_content"], (r["gold_name"], r["gold_args"]) if r["gold_name"] else None) for r in rows]
    assert format_reward(golds, **columns) == [1.0] * len(rows)
    assert all(s == 1.0 for s in tool_call_reward(golds, **columns) if s is not None)
    assert all(s == 1.0 for s in answer_reward(golds, **columns) if s is not None)
    assert clarify_reward(golds, **columns) == [1.0] * len(rows)
    questions = [s for s in question_reward(golds, **columns) if s is not None]
    # A gold question names its gold slots (question_targets): slots whose names say the same thing are the exception.
    assert questions and sum(s == 1.0 for s in questions) / len(questions) > 0.95


def test_unknown_reward_fails_at_config_load(tmp_path):
    with pytest.raises(ConfigError, match="unknown reward.*valid rewards: format, clarify"):
        get_rewards(["format", "helpfulness"])
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model_name_or_path: tiny\nreward_funcs: [format, vibes]\nreward_weights: [1, 1]\n")
    with pytest.raises(ConfigError, match="vibes"):
        load_recipe(str(recipe))


def test_native_gold_turns_parse_back_to_their_acts(splits, tiny_dir):
    """`native` SFT targets are what the chat template renders; the native parser reads the same act back."""
    from transformers import AutoTokenizer

    from speakrl.training.prompts import render_target
    from speakrl.training.protocols import parse

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    rows = decision_rows(splits["train"])[:150]
    targets = [render_target(tokenizer, r, "native") for r in rows]
    acts = [parse(t, "native").act for t in targets]
    assert sum(a == r["act"] for a, r in zip(acts, rows)) / len(rows) > 0.95
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    columns["protocol"] = ["native"] * len(rows)
    assert all(s == 1.0 for s in tool_call_reward(targets, **columns) if s is not None)
    assert format_reward(targets, **columns) == [1.0] * len(rows)
