"""SpeakER-SGD: SGD dialogue files -> contract rows labelled from the acts, a run directory, a published dataset."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from speakrl.pipeline import sgd
from speakrl.pipeline.catalog import load_catalog
from speakrl.pipeline.errors import SourceError
from speakrl.pipeline.stages import validate
from speakrl.schemas.dialogue import Dialogue, Rejection

DATA = Path(__file__).resolve().parents[2] / "data" / "sgd"
SLICE = DATA / "dialogues" / "train"
SCHEMA = SLICE / "schema.json"


def raw_dialogues() -> list[dict]:
    return [raw for _, raw in sgd.read_dialogues(SLICE)]


@pytest.fixture(scope="module")
def services():
    return sgd.load_schema(SCHEMA)[0]


@pytest.fixture(scope="module")
def pairs(services) -> list[tuple[dict, Dialogue]]:
    return [(raw, sgd.convert(raw, "train", services)) for raw in raw_dialogues()]


def system_turn_messages(raw: dict, d: Dialogue):
    """(SGD system turn, index of its utterance message, indices of its tool-call messages), walking both in order."""
    assistant_texts = [i for i, m in enumerate(d.messages) if m.role == "assistant" and not m.tool_calls]
    calls = [i for i, m in enumerate(d.messages) if m.role == "assistant" and m.tool_calls]
    system_turns = [t for t in raw["turns"] if t["speaker"] == "SYSTEM"]
    assert len(system_turns) == len(assistant_texts)
    previous = 0
    for turn, index in zip(system_turns, assistant_texts):
        yield turn, index, [c for c in calls if previous < c < index]
        previous = index


def test_slice_covers_two_services_and_every_label_kind(pairs):
    kinds = {(lab.act, lab.kind) for _, d in pairs for lab in d.labels}
    assert {("clarify", "request"), ("clarify", "confirm"), ("tool_call", None), ("answer", "offer"), ("answer", None)} <= kinds
    assert {d.domain for _, d in pairs} == {"restaurants_1", "music_1"}


def test_each_request_turn_is_a_clarify_with_exactly_its_slots(pairs):
    seen = 0
    for raw, d in pairs:
        labels = {lab.message_index: lab for lab in d.labels}
        for turn, index, _ in system_turn_messages(raw, d):
            assert d.messages[index].content == turn["utterance"]
            requested = [a["slot"] for f in turn["frames"] for a in f["actions"] if a["act"] == "REQUEST"]
            label = labels[index]
            if requested:
                seen += 1
                assert (label.act, label.kind) == ("clarify", "request")
                assert label.target_slots == list(dict.fromkeys(requested))
            else:
                assert label.kind != "request"
    assert seen >= 20


def test_confirm_turns_are_clarify_of_kind_confirm_with_the_confirmed_slots(pairs):
    seen = 0
    for raw, d in pairs:
        labels = {lab.message_index: lab for lab in d.labels}
        for turn, index, _ in system_turn_messages(raw, d):
            acts = [a for f in turn["frames"] for a in f["actions"]]
            confirmed = [a["slot"] for a in acts if a["act"] == "CONFIRM"]
            if confirmed and not any(a["act"] == "REQUEST" for a in acts):
                seen += 1
                assert (labels[index].act, labels[index].kind) == ("clarify", "confirm")
                assert set(labels[index].target_slots) == set(confirmed)
    assert seen >= 10


def test_each_service_call_is_one_tool_call_with_its_parameters_and_results(pairs, services):
    catalog = load_catalog(str(SCHEMA))
    names = {(svc.name, intent): tool.name for svc in services.values() for intent, tool in svc.tools.items()}
    total = 0
    for raw, d in pairs:
        for turn, _, call_indices in system_turn_messages(raw, d):
            frames = [f for f in turn["frames"] if "service_call" in f]
            assert len(call_indices) == len(frames)
            for frame, i in zip(frames, call_indices):
                total += 1
                (call,) = d.messages[i].tool_calls
                tool = names[(frame["service"], frame["service_call"]["method"])]
                assert call.function.name == tool
                assert any(t.name == tool for t in catalog.tool_domain(tool).tools)  # the SGD importer's name
                # typed by the schema (party_size 2, not "2"), equal to SGD's parameters once printed back
                args = call.function.args()
                assert {k: str(v) for k, v in args.items()} == frame["service_call"]["parameters"]
                result = d.messages[i + 1]
                assert (result.role, result.tool_call_id, result.name) == ("tool", call.id, tool)
                content = json.loads(result.content)
                rows = content.get("results", [] if content.get("status") == "failed" else [content])
                printed = [{k: str(v) for k, v in row.items() if k != "status"} for row in rows]
                assert printed == frame["service_results"]
        assert d.gold_calls == [m.tool_calls[0].function for m in d.messages if m.tool_calls]
        assert d.goal == (d.gold_calls[-1].args() if d.gold_calls else {})
    assert total >= 40


def test_ambiguities_are_the_requested_slots_and_controls_ask_nothing(pairs):
    for _, d in pairs:
        requested = [s for lab in d.labels if lab.kind == "request" for s in lab.target_slots]
        assert [a.slot for a in d.ambiguities] == list(dict.fromkeys(requested))
        assert d.needs_clarification == bool(requested)
    assert any(not d.ambiguities for _, d in pairs) and any(d.ambiguities for _, d in pairs)


def test_rows_state_sgds_date_and_go_through_the_unchanged_validators(pairs, services):
    catalog = load_catalog(str(SCHEMA))
    slots = sgd.domain_slots(services, [d for _, d in pairs])
    reasons = [sgd.check(d, raw, services, catalog, slots) for raw, d in pairs]
    assert all("Today is Friday, March 1, 2019." in d.messages[0].content for _, d in pairs)
    assert sum(r is None for r in reasons) >= 0.7 * len(pairs), reasons
    # the replay really compares: a tampered tool message is caught
    raw, d = next((raw, d) for (raw, d), r in zip(pairs, reasons) if r is None and d.gold_calls)
    tampered = d.model_copy(deep=True)
    tool_message = next(m for m in tampered.messages if m.role == "tool")
    tool_message.content = json.dumps({"count": 0, "results": []})
    assert sgd.check(tampered, raw, services, catalog, slots).startswith("execution_mismatch")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """SGD's layout with two splits: dev holds a service (Music_1) that train's schema does not have."""
    root = tmp_path_factory.mktemp("sgd")
    schema = json.loads(SCHEMA.read_text())
    for split, file_name, service in (("train", "dialogues_001.json", "Restaurants_1"), ("dev", "dialogues_008.json", "Music_1")):
        (root / split).mkdir()
        shutil.copy(SLICE / file_name, root / split / file_name)
        (root / split / "schema.json").write_text(json.dumps([s for s in schema if s["service_name"] == service]))
    return root


@pytest.fixture(scope="module")
def imported(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "sgd"
    sgd.import_corpus(corpus, out)
    return out


def test_import_writes_a_run_directory_where_every_dialogue_is_accounted_for(imported):
    for name in ("config.yaml", "manifest.json", "accepted.jsonl", "rejected.jsonl", "stats.json", "dataset/README.md"):
        assert (imported / name).is_file(), name
    stats = json.loads((imported / "stats.json").read_text())
    accepted = [json.loads(line) for line in (imported / "accepted.jsonl").read_text().splitlines()]
    rejected = [Rejection.model_validate_json(line) for line in (imported / "rejected.jsonl").read_text().splitlines()]
    assert stats["generated"] == 40 == len(accepted) + len(rejected) == stats["accepted"] + stats["rejected"]
    assert {r["id"].split("-")[1] for r in accepted} == {"train", "dev"}
    assert all(r.row and r.check for r in rejected)


def test_published_with_sgds_splits_license_and_citation(imported, tmp_path):
    ds = datasets.load_dataset(str(imported / "dataset"), cache_dir=str(tmp_path / "c"))
    assert set(ds) == {"train", "validation"}
    assert {r["domain"] for r in ds["train"]} == {"restaurants_1"}
    assert {r["domain"] for r in ds["validation"]} == {"music_1"}  # SGD's dev: a service train never saw
    points = datasets.load_dataset(str(imported / "dataset"), "decision_points", split="train", cache_dir=str(tmp_path / "c"))
    assert {"request", "confirm", "offer"} <= set(points.unique("kind"))
    card = (imported / "dataset" / "README.md").read_text()
    assert "license: cc-by-sa-4.0" in card and "rastogi2020sgd" in card and "SpeakER-SGD" in card
    assert "speakrl import sgd" in card


def test_published_rows_render_through_a_chat_template(imported, tmp_path):
    from transformers.utils.chat_template_utils import render_jinja_template

    import trl

    template = (Path(trl.__file__).parent / "chat_templates" / "qwen3.jinja").read_text()
    row = datasets.load_dataset(str(imported / "dataset"), split="train", cache_dir=str(tmp_path / "c"))[0]
    (text,), _ = render_jinja_template(conversations=[row["messages"]], tools=json.loads(row["tools"]), chat_template=template)
    first_user = next(m["content"] for m in row["messages"] if m["role"] == "user")
    assert first_user in text and f'"name": "{row["gold_calls"][-1]["name"]}"' in text


def test_unknown_service_or_intent_is_a_rejection(tmp_path):
    raw = raw_dialogues()[1]
    bad_service = {**raw, "dialogue_id": "x_1", "services": ["Banks_9"]}
    bad_intent = json.loads(json.dumps({**raw, "dialogue_id": "x_2"}))
    frame = next(f for t in bad_intent["turns"] for f in t["frames"] if "service_call" in f)
    frame["service_call"]["method"] = "LaunchRocket"
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "dialogues_001.json").write_text(json.dumps([raw, bad_service, bad_intent]))
    out = tmp_path / "run"
    stats = sgd.import_corpus(tmp_path / "train", out, SCHEMA)
    assert stats["generated"] == 3 and stats["dropped_unknown_service"] == 1 and stats["dropped_unknown_intent"] == 1
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert {r["id"] for r in rejected} == {"sgd-train-x_1", "sgd-train-x_2"} and all(r["row"]["turns"] for r in rejected)


def speakrl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from speakrl.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"),
    ("not_json", "is not valid JSON"),
    ("no_turns", "lacks dialogue_id, services or turns"),
    ("no_schema", "pass SGD's schema.json with --schema"),
    ("bad_schema", "is not an SGD schema"),
])
def test_malformed_input_is_one_sentence_exit_2(tmp_path, case, message):
    split = tmp_path / "train"
    split.mkdir()
    shutil.copy(SCHEMA, split / "schema.json")
    (split / "dialogues_001.json").write_text(json.dumps(raw_dialogues()[:2]))
    target = split
    if case == "missing":
        target = tmp_path / "nowhere"
    elif case == "not_json":
        (split / "dialogues_002.json").write_text("[{")
    elif case == "no_turns":
        (split / "dialogues_002.json").write_text(json.dumps([{"dialogue_id": "1_1", "services": []}]))
    elif case == "no_schema":
        (split / "schema.json").unlink()
    elif case == "bad_schema":
        (split / "schema.json").write_text(json.dumps({"tools": 3}))
    proc = speakrl("import", "sgd", str(target), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert message in " ".join(proc.stderr.split()), proc.stderr
    assert not list((tmp_path / "out").glob(".*.tmp")) and not (tmp_path / "out" / "accepted.jsonl").exists()


def test_import_refuses_to_overwrite_a_generated_run(tmp_path):
    from speakrl_testing.runs import make_run

    run = make_run(tmp_path / "run")
    with pytest.raises(SourceError, match="holds a `speakrl run` run"):
        sgd.import_corpus(SLICE, run)
    assert json.loads((run / "manifest.json").read_text())["config_hash"]


def test_a_turn_without_frames_is_one_sentence(tmp_path):
    raw = json.loads(json.dumps(raw_dialogues()[0]))
    del raw["turns"][1]["frames"]
    (tmp_path / "dialogues_001.json").write_text(json.dumps([raw]))
    with pytest.raises(SourceError, match="is malformed"):
        sgd.import_corpus(tmp_path, tmp_path / "out", SCHEMA)


def test_confirmations_are_not_judged_as_clarification_questions(pairs):
    """A control (no REQUEST) whose assistant confirms before booking is not 'asked_in_control'."""
    d = next(d for _, d in pairs if not d.ambiguities and any(lab.kind == "confirm" for lab in d.labels))
    assert validate.asks_when_needed(d, None) is None  # type: ignore[arg-type]
    as_request = d.model_copy(deep=True)
    for lab in as_request.labels:
        if lab.kind == "confirm":
            lab.kind = None
    assert validate.asks_when_needed(as_request, None).startswith("asked_in_control")  # type: ignore[arg-type]


def test_a_dialogue_spanning_two_services_keeps_every_tool(services, pairs):
    catalog = load_catalog(str(SCHEMA))
    slots = sgd.domain_slots(services, [d for _, d in pairs])
    passing = [raw for raw, d in pairs if sgd.check(d, raw, services, catalog, slots) is None]
    first = next(raw for raw in passing if raw["services"] == ["Restaurants_1"])
    second = next(raw for raw in passing if raw["services"] == ["Music_1"])
    both = {"dialogue_id": "9_00001", "services": ["Restaurants_1", "Music_1"], "turns": first["turns"] + second["turns"]}
    d = sgd.convert(both, "test", services)
    assert d.domain == "restaurants_1+music_1" and d.id == "sgd-test-9_00001"
    assert {t.name for t in d.tools} == {*services["Restaurants_1"].specs, *services["Music_1"].specs}
    assert [c.name for c in d.gold_calls][-1] in services["Music_1"].specs
    slots = sgd.domain_slots(services, [d])
    assert {"cuisine", "song_name"} <= set(slots[d.domain])
    reason = sgd.check(d, both, services, catalog, slots)
    assert reason is None or not reason.startswith(("invalid_arguments", "execution_mismatch", "label_mismatch")), reason


def test_categorical_informs_are_recorded_at_their_user_turn(pairs, services):
    seen = 0
    for raw, d in pairs:
        users = [i for i, m in enumerate(d.messages) if m.role == "user"]
        user_turns = [t for t in raw["turns"] if t["speaker"] == "USER"]
        want = []
        for index, turn in zip(users, user_turns):
            for frame in turn["frames"]:
                categorical = services[frame["service"]].categorical
                spanned = {s["slot"] for s in frame["slots"]}
                for a in frame["actions"]:
                    if a["act"] == "INFORM" and a["slot"] in categorical and a["canonical_values"] != ["dontcare"]:
                        assert a["slot"] not in spanned  # SGD gives categorical values no span: the act is all there is
                        want += [(index, a["slot"], v) for v in a["canonical_values"]]
        assert [(i.message_index, i.slot, i.value) for i in d.informs] == want
        seen += len(want)
    assert seen >= 10
    assert "price_range" in services["Restaurants_1"].categorical and "city" not in services["Restaurants_1"].categorical


def test_the_same_call_twice_replays_each_recording_in_turn(pairs, services):
    """SGD's backend was sampled per call: the same search made twice in one dialogue can list other results (1_00107:
    10 restaurants, then 9). Each replay is checked against its own recording, in order, not all against the first."""
    raw, d = next((raw, d) for raw, d in pairs if d.gold_calls)
    frame = next(f for t in raw["turns"] for f in t.get("frames", []) if "service_call" in f and f.get("service_results"))
    fewer = {**frame, "service_results": frame["service_results"][:1]}
    twice = {"turns": [{"speaker": "SYSTEM", "frames": [frame]}, {"speaker": "SYSTEM", "frames": [fewer]}]}
    tool = services[frame["service"]].tools[frame["service_call"]["method"]]
    args = sgd._typed(services[frame["service"]].domain, frame["service_call"]["parameters"])
    backend = sgd.RecordedTools(twice, services, list(services[frame["service"]].specs.values()))
    first, second = backend.execute(tool.name, dict(args)), backend.execute(tool.name, dict(args))
    assert "error" not in first and first != second
    assert second == sgd.tool_result(tool, services[frame["service"]].domain, frame["service_results"][:1])


def test_sgd_configs_are_pushed_beside_speakers_and_load_from_the_hub(imported, tmp_path):
    """`speakrl publish RUN --sgd SGD_RUN`: SpeakER-SGD becomes the `sgd` and `sgd_decision_points` configs of
    SpeakER's repo, in SGD's own splits, with both licenses in the metadata and SGD's license and citation in the card;
    the real `datasets` client reads every config back through the local Hub."""
    from huggingface_hub import DatasetCard

    from speakrl.pipeline.hub import push
    from speakrl.pipeline.stages.publish import PublishOptions
    from speakrl_testing.hub_server import HubServer, hub_environment
    from speakrl_testing.runs import check_published, make_run

    run = make_run(tmp_path / "run")
    with HubServer() as hub, hub_environment(hub, tmp_path):
        repo_id = f"{hub.user}/SpeakER"
        assert push(run, repo_id, options=PublishOptions(sgd_run=imported)).changed

        def load(name):
            return datasets.load_dataset(repo_id, name, cache_dir=str(tmp_path / "cache"))

        counts = check_published(load, imported, names=("sgd", "sgd_decision_points", None))
        assert set(counts["sgd"]) == {"train", "validation"}  # SGD's train and dev
        assert {r["domain"] for r in load("sgd")["validation"]} == {"music_1"}
        check_published(load, run)  # SpeakER's own configs are untouched
        card = DatasetCard.load(repo_id, repo_type="dataset")
    assert card.data.license == ["cc-by-4.0", "cc-by-sa-4.0"]
    assert {c["config_name"] for c in card.data.configs} == {"default", "decision_points", "rejected", "sgd", "sgd_decision_points"}
    text = " ".join(card.content.split())
    assert "the `sgd` and `sgd_decision_points` configs under CC BY-SA 4.0" in text and "rastogi2020sgd" in text
    assert f"{counts['sgd']['train'] + counts['sgd']['validation']} human-written dialogues" in text


def test_a_rebuild_without_sgd_drops_the_sgd_configs(imported, tmp_path):
    from speakrl.pipeline.stages.publish import PublishOptions, build_dataset_dir
    from speakrl_testing.runs import make_run

    run = make_run(tmp_path / "run")
    out = build_dataset_dir(run, tmp_path / "ds", PublishOptions(sgd_run=imported, figure=False))
    assert list((out / "data" / "sgd").glob("*.parquet"))
    build_dataset_dir(run, out, PublishOptions(figure=False))
    assert not list((out / "data").glob("sgd*/*.parquet"))
    assert "config_name: sgd" not in (out / "README.md").read_text() and "cc-by-sa" not in (out / "README.md").read_text()


@pytest.mark.parametrize("which, message", [
    ("generated", "is not a `speakrl import sgd` run"),  # --sgd names a generated run
    ("missing", "does not exist"),
    ("self", "is itself a `speakrl import sgd` run; publish it without --sgd"),
])
def test_publish_with_a_wrong_sgd_run_is_one_sentence_exit_2(imported, tmp_path, which, message):
    from speakrl_testing.runs import make_run

    run = make_run(tmp_path / "run")
    target, sgd_run = {"generated": (run, run), "missing": (run, tmp_path / "nowhere"), "self": (imported, imported)}[which]
    proc = speakrl("publish", str(target), "--sgd", str(sgd_run), "--to-dir", str(tmp_path / "ds"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert message in " ".join(proc.stderr.split()), proc.stderr


def _rejection_table() -> list[dict[str, str]]:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("<!-- sgd-rejections -->")[1].split("<!-- /sgd-rejections -->")[0].strip().splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in table[2:]]


def test_the_readmes_rejection_table_adds_up_and_each_example_is_rejected_by_its_check():
    """The README's table of what the validators reject in SGD: its counts are the measured rejections (1,280
    dialogues, 1,241 accepted), and each example, with its slot from SGD's schema, fails the check it stands for."""
    from speakrl.pipeline.checks import question_targets, ungrounded_args

    services = sgd.load_schema(DATA / "train_schema.json")[0]
    rows = _rejection_table()
    assert sum(int(r["dialogues"]) for r in rows) == 1280 - 1241
    for row in rows:
        service, slot = row["service.slot"].split(".")
        spec = services[service].domain.slot(slot)
        said = row["example"].split('"')[1]
        if row["check"] == "`question_off_target`":
            assert question_targets(said, [spec]) == set(), row
        else:
            assert row["check"] == "`ungrounded_value`" and spec.type == "boolean"
            assert ungrounded_args({slot: True}, [said], {}) == [slot], row
