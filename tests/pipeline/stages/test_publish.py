"""The publish stage: leak-free splits, typed parquet in the Hub layout, the dataset card, and `speakrl publish --to-dir`."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import yaml
from huggingface_hub import DatasetCard

from speakrl.pipeline.errors import PublishError
from speakrl.pipeline.io import read_jsonl, write_jsonl
from speakrl.pipeline.stages.publish import (
    SPLITS,
    PublishOptions,
    assign_splits,
    build_dataset_dir,
    check_no_leakage,
    leakage_groups,
)
from speakrl_testing.runs import check_published, make_dialogue, make_run, run_cli
from speakrl.schemas.dialogue import Dialogue


def load_local(path: Path, cache: Path):
    return lambda name: datasets.load_dataset(str(path), name, cache_dir=str(cache))


@pytest.fixture
def run(tmp_path) -> Path:
    return make_run(tmp_path / "run")


@pytest.fixture
def built(run, tmp_path) -> Path:
    return build_dataset_dir(run, tmp_path / "dataset")


def split_of(out: Path, cache: Path) -> dict[str, str]:
    ds = datasets.load_dataset(str(out), "default", cache_dir=str(cache))
    return {row_id: split for split, d in ds.items() for row_id in d["id"]}


# --- the local round trip -------------------------------------------------------------------------------------------


def test_every_config_and_split_loads_back_exactly(built, run, tmp_path):
    counts = check_published(load_local(built, tmp_path / "cache"), run)
    assert set(counts["default"]) == set(SPLITS)  # 48 rows over four domains: every split is present
    assert counts["rejected"] == {"train": 5}
    files = sorted(p.relative_to(built).as_posix() for p in built.rglob("*") if p.is_file())
    assert files == sorted(
        ["README.md", "assets/distributions.png", "data/rejected/train-00000-of-00001.parquet"]
        + [f"data/{c}/{s}-00000-of-00001.parquet" for c in ("default", "decision_points") for s in SPLITS]
    )


def test_real_run_dataset_dir_from_the_runner_loads(small_run, tmp_path):
    """`speakrl run` leaves run/dataset/ (the runner calls build_dataset_dir); every config reads back exactly."""
    counts = check_published(load_local(small_run / "dataset", tmp_path / "cache"), small_run)
    accepted = sum(1 for _ in read_jsonl(small_run / "accepted.jsonl"))
    assert sum(counts["default"].values()) == accepted
    assert counts["default"]["test_ood"] > 0 and counts["default"]["validation"] > 0 and counts["default"]["test"] > 0


def test_build_is_deterministic_and_seeded(run, tmp_path):
    a = build_dataset_dir(run, tmp_path / "a")
    b = build_dataset_dir(run, tmp_path / "b")
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files and all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    other = build_dataset_dir(run, tmp_path / "c", PublishOptions(seed=7))
    assert split_of(a, tmp_path / "cache") != split_of(other, tmp_path / "cache2")


def test_build_over_many_parts_in_a_pool_writes_the_same_files(tmp_path, monkeypatch):
    """accepted.jsonl encoded in many pieces by a process pool, shards of a few row groups each: the same parquet
    bytes as one piece encoded in process, and the same card but for the Arrow byte estimate (num_bytes)."""
    from speakrl.pipeline.stages import publish

    run = make_run(tmp_path / "run", n=60)
    monkeypatch.setattr(publish, "ROWS_PER_SHARD", 10)
    monkeypatch.setattr(publish.ShardWriter, "BATCH", 5)
    one = build_dataset_dir(run, tmp_path / "one")  # every row in one piece (below PART_BYTES): no pool
    pools = []
    real_pool = publish._pool
    monkeypatch.setattr(publish, "_pool", lambda workers: pools.append(workers) or real_pool(workers))
    monkeypatch.setattr(publish, "PART_BYTES", 4000)  # ~one dialogue a piece
    many = build_dataset_dir(run, tmp_path / "many")
    assert pools  # the pieces went to worker processes
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(many) for p in many.rglob("*") if p.is_file())
    assert len([f for f in files if f.parts[:2] == ("data", "default")]) > 4  # several shards per split
    for f in files:
        if f.name == "README.md":
            strip = lambda text: [ln for ln in text.splitlines() if "num_bytes" not in ln and "dataset_size" not in ln]  # noqa: E731
            assert strip((one / f).read_text()) == strip((many / f).read_text())
        else:
            assert (one / f).read_bytes() == (many / f).read_bytes(), f
    check_published(load_local(many, tmp_path / "cache"), run)
    assert not list(tmp_path.glob(".speakrl-parts-*"))  # the scratch directory is gone


def test_rebuild_replaces_stale_shards_but_nothing_else(run, tmp_path):
    out = build_dataset_dir(run, tmp_path / "ds")
    mine = out / "data" / "default" / "notes.parquet"  # not a shard name of ours: kept
    mine.write_bytes(b"user file")
    build_dataset_dir(run, out, PublishOptions(ood_domains=[]))
    assert not list((out / "data" / "default").glob("test_ood-*"))
    assert mine.read_bytes() == b"user file"
    assert "test_ood" not in datasets.load_dataset(str(out), "default", cache_dir=str(tmp_path / "cache"))


# --- splits and leakage ---------------------------------------------------------------------------------------------


def test_shared_scenario_goal_and_near_duplicates_stay_in_one_split(tmp_path):
    base = [make_dialogue(i, ["flights", "hotels", "movies"][i % 3]) for i in range(30)]
    same_scenario = make_dialogue(100, "flights", scenario_id=base[3].scenario_id)
    same_goal = base[4].model_copy(update={"id": "goal-twin", "scenario_id": "other-scenario",
                                           "messages": [base[4].messages[0], *base[7].messages[1:]]})
    near_dup = base[5].model_copy(update={"id": "near-twin", "scenario_id": "s-near", "goal": {"x": "y"}})
    near_dup.messages[-1] = near_dup.messages[-1].model_copy(update={"content": "Done! All set."})
    rows = [*base, same_scenario, same_goal, near_dup]
    groups = leakage_groups(rows, threshold=0.8)
    group_of = {rows[i].id: g for g, members in enumerate(groups) for i in members}
    assert group_of[same_scenario.id] == group_of[base[3].id]
    assert group_of["goal-twin"] == group_of[base[4].id]
    assert group_of["near-twin"] == group_of[base[5].id]
    assert group_of[base[0].id] != group_of[base[1].id]  # unrelated dialogues are not chained together

    for seed in range(5):  # whatever the seed, the twins land together
        result = assign_splits(rows, PublishOptions(ood_domains=[], validation_fraction=0.3, test_fraction=0.3),
                               seed=seed, threshold=0.8)
        where = {d.id: s for s, ds in result.splits.items() for d in ds}
        assert where[same_scenario.id] == where[base[3].id]
        assert where["goal-twin"] == where[base[4].id]
        assert where["near-twin"] == where[base[5].id]
        assert len(where) == len(rows)


def test_entries_whose_minhash_stays_on_disk_group_like_the_dialogues(tmp_path, monkeypatch):
    from speakrl.pipeline.stages import publish

    base = [make_dialogue(i, ["flights", "hotels", "movies"][i % 3]) for i in range(12)]
    near_dup = base[5].model_copy(update={"id": "near-twin", "scenario_id": "s-near", "goal": {"x": "y"}})
    near_dup.messages[-1] = near_dup.messages[-1].model_copy(update={"content": "Done! All set."})
    run = make_run(tmp_path / "run")
    write_jsonl(run / "accepted.jsonl", [*base, near_dup])
    monkeypatch.setattr(publish, "PART_BYTES", 4000)  # several parts, so row numbers run across them
    (tmp_path / "parts").mkdir()
    data = publish.read_run(run, parts=tmp_path / "parts")
    assert len(data.parts) > 2 and [e.hashvalues for e in data.accepted] == list(range(13))
    groups = leakage_groups(data.accepted, threshold=0.8, store=data.minhashes)
    assert groups == leakage_groups([*base, near_dup], threshold=0.8)
    assert any({5, 12} <= set(g) for g in groups)
    data.minhashes.close()


def test_leakage_check_catches_each_kind():
    a, b = make_dialogue(1, "flights"), make_dialogue(2, "hotels")
    with pytest.raises(PublishError, match="scenario"):
        check_no_leakage({"train": [a], "test": [b.model_copy(update={"scenario_id": a.scenario_id})]}, 0.9)
    with pytest.raises(PublishError, match="goal"):
        check_no_leakage({"train": [a], "test": [a.model_copy(update={"id": "x", "scenario_id": "y"})]}, 0.9)
    twin = make_dialogue(1, "flights").model_copy(update={"id": "x", "scenario_id": "y", "goal": {"z": 1}})
    with pytest.raises(PublishError, match="near-duplicates"):
        check_no_leakage({"train": [a], "test": [twin]}, 0.9)
    check_no_leakage({"train": [a], "test": [b]}, 0.9)  # unrelated rows pass


def test_ood_holds_out_whole_domains_and_tools(run, tmp_path):
    out = build_dataset_dir(run, tmp_path / "ds", PublishOptions(ood_domains=["movies"], ood_tools=["book_flight"]))
    ds = datasets.load_dataset(str(out), "default", cache_dir=str(tmp_path / "cache"))
    assert set(ds["test_ood"]["domain"]) == {"movies", "flights"}
    for split in ("train", "validation", "test"):
        assert not {"movies", "flights"} & set(ds[split]["domain"])
        assert all(c["name"] != "book_flight" for calls in ds[split]["gold_calls"] for c in calls)
    card = (out / "README.md").read_text()
    assert "movies" in card and "book_flight" in card


def test_default_ood_is_one_domain_picked_by_seed(run, tmp_path):
    from speakrl.pipeline.stages.publish import default_ood_domains

    domains = {d.domain for d in read_jsonl(run / "accepted.jsonl", Dialogue)}
    held = {seed: default_ood_domains(domains, seed) for seed in range(6)}
    assert all(len(v) == 1 and v[0] in domains for v in held.values())
    assert len({v[0] for v in held.values()}) > 1  # the seed decides which
    out = build_dataset_dir(run, tmp_path / "ds", PublishOptions(seed=3))
    ds = datasets.load_dataset(str(out), "default", split="test_ood", cache_dir=str(tmp_path / "cache"))
    assert set(ds["domain"]) == set(held[3])


def test_impossible_holdouts_are_refused(run, tmp_path):
    with pytest.raises(PublishError, match="no accepted dialogue"):
        build_dataset_dir(run, tmp_path / "ds", PublishOptions(ood_domains=["atlantis"]))
    with pytest.raises(PublishError, match="out-of-domain split is empty"):
        build_dataset_dir(run, tmp_path / "ds", PublishOptions(ood_domains=[], ood_tools=["no_such_tool"]))
    with pytest.raises(PublishError, match="leaves no dialogue for train"):
        build_dataset_dir(run, tmp_path / "ds", PublishOptions(ood_domains=["flights", "hotels", "movies", "restaurants"]))


# --- the card and the figure ----------------------------------------------------------------------------------------


def test_card_metadata_is_complete_and_matches_the_files(built, run):
    card = DatasetCard.load(built / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "cc-by-4.0"  # builtin catalog, no SGD slot values
    assert data["language"] == ["en"] and data["task_categories"] == ["text-generation"]
    assert data["size_categories"] == ["n<1K"]
    assert "synthetic" in data["tags"]
    configs = {c["config_name"]: c for c in data["configs"]}
    assert set(configs) == {"default", "decision_points", "rejected"} and configs["default"]["default"] is True
    for name, c in configs.items():
        for entry in c["data_files"]:
            assert list(built.glob(entry["path"])), f"{name}/{entry['split']} names no file"
    infos = {i["config_name"]: i for i in data["dataset_info"]}
    assert {s["name"]: s["num_examples"] for s in infos["rejected"]["splits"]} == {"train": 5}
    text = card.text
    for needle in ("Acikgoz", "(https://arxiv.org/abs/2512.13159)", "## Statistics", "offline", "ungrounded_argument", "test_ood",
                   "assets/distributions.png", "json.loads(row[\"tools\"])"):
        assert needle in text, needle
    assert str(run) not in card.content and "/tmp" not in card.content  # no local path (config.yaml has one)


def test_card_gives_the_length_of_the_longest_row(built):
    """What the card's TRL advice (max_length) rests on: the longest and median row, in characters of its messages
    and tool specs as published."""
    import statistics as stat

    import pyarrow.parquet as pq

    lengths = []
    for path in (built / "data" / "default").glob("*.parquet"):
        table = pq.read_table(path, columns=["messages", "tools"]).to_pydict()  # the JSON texts, as stored
        lengths += [sum(map(len, messages)) + len(tools) for messages, tools in zip(table["messages"], table["tools"])]
    text = DatasetCard.load(built / "README.md").text
    assert f"{max(lengths):,} characters at most in this\ndataset (median {int(stat.median(lengths)):,}), before" in text
    assert 'SFTConfig(output_dir="sft-points", max_length=None)' in text


def test_figure_is_a_png(built):
    png = (built / "assets" / "distributions.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_sgd_values_make_the_card_share_alike_with_attribution(tmp_path):
    run = make_run(tmp_path / "run", config={"slot_values": "/data/sgd/train_slot_values.json"})
    out = build_dataset_dir(run, tmp_path / "ds")
    card = DatasetCard.load(out / "README.md")
    assert card.data.license == "cc-by-sa-4.0"
    assert "Schema-Guided Dialogue" in card.text and "Rastogi" in card.text
    assert "/data/sgd" not in card.content and "train_slot_values.json" in card.content


def test_tools_column_is_what_trl_expects(built, tmp_path):
    """TRL's SFTTrainer does `json.loads(tools) if isinstance(tools, str)`: the column decodes to OpenAI tool specs."""
    row = datasets.load_dataset(str(built), "default", split="train", cache_dir=str(tmp_path / "c"))[0]
    tools = json.loads(row["tools"]) if isinstance(row["tools"], str) else row["tools"]
    assert isinstance(tools, list) and tools[0]["type"] == "function"
    assert set(tools[0]["function"]) == {"name", "description", "parameters"}
    assistant = [m for m in row["messages"] if "tool_calls" in m][0]
    args = assistant["tool_calls"][0]["function"]["arguments"]
    assert isinstance(args, dict) and args  # an object, as chat templates expect (not the API's JSON string)
    assert all(None not in m.values() for m in row["messages"])  # unused fields are absent, not null


def test_rows_render_through_a_chat_template_with_tools(built, tmp_path):
    """A published row goes straight into a real chat template (TRL's bundled Qwen3 one) with its tools."""
    from transformers.utils.chat_template_utils import render_jinja_template

    import trl

    template = (Path(trl.__file__).parent / "chat_templates" / "qwen3.jinja").read_text()
    row = datasets.load_dataset(str(built), "default", split="train", cache_dir=str(tmp_path / "c"))[0]
    tools = json.loads(row["tools"])
    (text,), _ = render_jinja_template(conversations=[row["messages"]], tools=tools, chat_template=template)
    call = row["gold_calls"][-1]
    assert tools[0]["function"]["description"] in text  # the tool specs reached the system prompt
    assert f'"name": "{call["name"]}"' in text and row["messages"][-1]["content"] in text
    point = datasets.load_dataset(str(built), "decision_points", split="train", cache_dir=str(tmp_path / "c"))[0]
    (prompt,), _ = render_jinja_template(conversations=[point["prompt"]], tools=json.loads(point["tools"]),
                                         chat_template=template, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")


# --- bad input ------------------------------------------------------------------------------------------------------


def test_run_without_accepted_rows_is_refused(tmp_path):
    run = make_run(tmp_path / "run")
    write_jsonl(run / "accepted.jsonl", [])
    with pytest.raises(PublishError, match="no accepted dialogues"):
        build_dataset_dir(run, tmp_path / "ds")
    (run / "accepted.jsonl").unlink()
    with pytest.raises(PublishError, match="no accepted.jsonl"):
        build_dataset_dir(run, tmp_path / "ds")
    assert not (tmp_path / "ds").exists()  # nothing half-written


def test_corrupt_rows_are_one_sentence(tmp_path):
    run = make_run(tmp_path / "run")
    (run / "accepted.jsonl").write_text('{"id": "x"}\n')
    with pytest.raises(PublishError, match="do not match the data contract"):
        build_dataset_dir(run, tmp_path / "ds")


# --- the command ----------------------------------------------------------------------------------------------------


def test_cli_to_dir(run, tmp_path, monkeypatch, capsys):
    assert run_cli(monkeypatch, "publish", str(run), "--to-dir", str(tmp_path / "out"), "--ood-domain", "hotels") == 0
    ds = datasets.load_dataset(str(tmp_path / "out"), "default", cache_dir=str(tmp_path / "cache"))
    assert set(ds["test_ood"]["domain"]) == {"hotels"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--to-dir", "{tmp}/out", "--repo-id", "not a repo"], "not a valid repo id"),
        ([], "nothing to do"),
        (["--to-dir", "{tmp}/out", "--no-ood", "--ood-domain", "hotels"], "contradict"),
    ],
)
def test_cli_bad_input_is_one_sentence_exit_2(run, tmp_path, monkeypatch, capsys, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert run_cli(monkeypatch, "publish", str(run), *args) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split()) and "Traceback" not in err and err.count("error:") == 1


def test_cli_empty_run_exit_2(tmp_path, monkeypatch, capsys):
    run = make_run(tmp_path / "run")
    write_jsonl(run / "accepted.jsonl", [])
    assert run_cli(monkeypatch, "publish", str(run), "--to-dir", str(tmp_path / "out")) == 2
    assert "no accepted dialogues" in " ".join(capsys.readouterr().err.split())


def test_config_yaml_paths_are_reduced(run):
    from speakrl.pipeline.stages.publish import public_config

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert public_config(cfg)["out"] == "run"


def test_figure_statistics_match_the_rows(built, run, tmp_path):
    """The figure's data (act per turn position, questions per dialogue by kind, split sizes) agree with the files."""
    from speakrl.pipeline.stages.publish import read_run, statistics

    ds = datasets.load_dataset(str(built), "default", cache_dir=str(tmp_path / "c"))
    rows = [r for split in ds.values() for r in split]
    data = read_run(run)
    split = assign_splits(data.accepted, PublishOptions(), seed=0, threshold=0.9)
    stats = statistics(split, data.rejected, 0)
    assert stats["split_sizes"] == {s: len(ds[s]) for s in SPLITS}
    first_acts = [r["turn_labels"][0]["act"] for r in rows]
    assert stats["acts_by_position"][0] == {a: first_acts.count(a) for a in set(first_acts)}
    controls = [r["num_clarifications"] for r in rows if not r["ambiguity_types"]]
    assert stats["clarifications_by_kind"]["control"] == {q: controls.count(q) for q in set(controls)}


def test_offline_card_lists_no_endpoint_or_mode(small_run):
    """config.yaml of an offline run holds the endpoint defaults (gpt-4o-mini, mode paraphrase); the card does not."""
    assert "gpt-4o-mini" in (small_run / "config.yaml").read_text()
    config = (small_run / "dataset" / "README.md").read_text().split("```yaml\n", 1)[1].split("```", 1)[0]
    assert "endpoint" not in config and "paraphrase" not in config and "gpt-4o-mini" not in config
    assert yaml.safe_load(config)["dialogues"] == {"backend": "offline"}


def test_encoded_parts_run_a_bounded_window_ahead_and_come_in_order(monkeypatch):
    """A build holds at most `window` encoded parts at once, whatever the run's size."""
    from concurrent.futures import Future

    from speakrl.pipeline.stages import publish

    monkeypatch.setattr(publish, "encode_part", lambda k: [k])

    class Pool:
        def __init__(self):
            self.pending = self.most = 0

        def submit(self, fn, *args):
            future = Future()
            future.set_result(fn(*args))
            self.pending += 1
            self.most = max(self.most, self.pending)
            return future

    pool = Pool()
    results = []
    for result in publish._encoded(pool, [(k,) for k in range(10)], window=3):
        pool.pending -= 1  # the caller has this part; the build keeps no other reference to it
        results.append(result)
    assert results == [[k] for k in range(10)]
    assert pool.most == 3
