"""Bad input across every subcommand: each exits non-zero with one sentence, no traceback, and leaves nothing that
looks complete (issue 13). Each case runs `speakrl.cli.main()` in-process, as the console script does."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from speakrl_testing.runs import run_cli

SGD_SLOTS = [
    {"name": "restaurant_name", "description": "name of the restaurant", "is_categorical": False,
     "possible_values": ["Sakura", "Luigi's", "Sol"]},
    {"name": "city", "description": "city", "is_categorical": False, "possible_values": ["Boston", "Denver"]},
    {"name": "party_size", "description": "people", "is_categorical": True, "possible_values": ["1", "2", "3", "4"]},
]
SGD_INTENTS = [
    {"name": "FindRestaurants", "description": "find", "is_transactional": False, "required_slots": ["city"],
     "optional_slots": {}, "result_slots": ["restaurant_name", "city"]},
    {"name": "ReserveRestaurant", "description": "book", "is_transactional": True,
     "required_slots": ["restaurant_name", "city", "party_size"], "optional_slots": {}, "result_slots": []},
]


def sgd(slots=None, intents=None) -> list[dict]:
    return [{"service_name": "Restaurants_1", "description": "restaurants", "slots": slots or SGD_SLOTS,
             "intents": SGD_INTENTS if intents is None else intents}]


def openai_tool(name: str = "book_table", parameters=None) -> list[dict]:
    params = parameters if parameters is not None else {
        "type": "object", "properties": {"city": {"type": "string", "enum": ["Boston", "Denver"]}}, "required": ["city"]}
    return [{"type": "function", "function": {"name": name, "description": "book a table", "parameters": params}}]


def domain(**changes) -> dict:
    from speakrl.pipeline.catalog import load_catalog

    d = load_catalog("builtin").domain("restaurants").model_dump()
    d.update(changes)
    return d


def empty_pool() -> dict:
    d = domain()
    for slot in d["slots"]:
        if slot["name"] == "cuisine":
            slot.update(enum=None, values=[])
    return d


def values_for(pools: dict) -> dict:
    """The restaurants domain with `cuisine` drawing its result values from `pools` (`SlotSpec.values_for`)."""
    d = domain()
    next(s for s in d["slots"] if s["name"] == "cuisine")["values_for"] = pools
    return d


def unique(name: str) -> dict:
    """The restaurants domain with slot `name` marked `unique` (`SlotSpec.unique`)."""
    d = domain()
    next(s for s in d["slots"] if s["name"] == name)["unique"] = True
    return d


def empty_enum() -> dict:
    d = domain()
    slot = next(s for s in d["slots"] if s["enum"])
    slot["enum"] = []
    return d


@dataclass
class Case:
    id: str
    args: list[str]
    words: list[str] = field(default_factory=list)
    files: dict[str, object] = field(default_factory=dict)  # name -> JSON data, text or bytes
    setup: Callable[[Path], None] | None = None  # gets the case's directory (with the finished run at "run")
    usage: bool = False  # a click usage error (its own "Usage: ..." block)


def _corrupt(name: str, content: bytes) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        (root / "run" / name).write_bytes(content)
    return setup


def _truncate_shard(root: Path) -> None:
    shard = root / "run" / "dialogues" / "shard-00000.jsonl"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    shutil.rmtree(root / "run" / "validated")
    for name in ("accepted.jsonl", "rejected.jsonl", "stats.json"):
        (root / "run" / name).unlink()
    shutil.rmtree(root / "run" / "dataset")


RUN = ["--n", "40", "--seed", "3", "--shard-size", "20", "--workers", "1"]

CASES = [
    # usage errors (click): every command
    Case("run-seed-not-int", ["run", "--seed", "abc", "--out", "o"], ["--seed"], usage=True),
    Case("run-unknown-option", ["run", "--colour", "blue", "--out", "o"], ["--colour"], usage=True),
    Case("unknown-command", ["nosuchcmd"], ["nosuchcmd"], usage=True),
    Case("publish-missing-argument", ["publish"], ["run_dir"], usage=True),
    Case("scenarios-n-not-int", ["scenarios", "--n", "ten", "--out", "o"], ["--n"], usage=True),
    Case("validate-unknown-option", ["validate", "--fast"], ["--fast"], usage=True),
    Case("train-max-steps-negative", ["train", "--recipe", "tiny-cpu", "--dataset", "run", "--output-dir", "o",
                                      "--max-steps", "-1"], ["--max-steps"], usage=True),
    Case("eval-concurrency-zero", ["eval", "--model", "m", "--dataset", "run", "--base-url", "http://localhost:1/v1",
                                   "--concurrency", "0"], ["--concurrency"], usage=True),
    Case("eval-missing-model", ["eval", "--dataset", "run"], ["--model"], usage=True),
    # run flags
    Case("run-n-zero", ["run", "--n", "0", "--out", "o"], ["'n'", "greater than 0"]),
    Case("run-n-huge", ["run", "--n", str(10**12), "--out", "o"], ["'n'", "less than or equal"]),
    Case("dialogues-n-negative", ["dialogues", "--n", "-3", "--out", "o"], ["'n'"]),
    Case("run-shard-size-zero", ["run", "--shard-size", "0", "--out", "o"], ["shard_size"]),
    Case("run-workers-negative", ["run", "--workers", "-1", "--out", "o"], ["workers"]),
    Case("run-max-cost-negative", ["run", "--max-cost", "-5", "--out", "o"], ["max_cost"]),
    Case("run-backend-unknown", ["run", "--backend", "gemini", "--out", "o"], ["backend"]),
    Case("run-mode-unknown", ["run", "--mode", "sing", "--out", "o"], ["mode"]),
    Case("run-base-url-bad-ipv6", ["run", "--backend", "openai", "--base-url", "http://[::1", "--out", "o"], ["base_url"]),
    Case("run-base-url-not-a-url", ["run", "--backend", "openai", "--base-url", "notaurl", "--out", "o"], ["notaurl"]),
    Case("run-base-url-ftp", ["run", "--backend", "openai", "--base-url", "ftp://host/v1", "--out", "o"], ["http"]),
    Case("run-dry-run-offline", ["run", "--dry-run", "--out", "o"], ["--dry-run"]),
    Case("run-out-under-a-file", ["run", *RUN, "--out", "blocker/o"], ["cannot write"], files={"blocker": "a file"}),
    Case("run-max-cost-without-prices", ["run", *RUN, "--backend", "openai", "--base-url", "http://localhost:9/v1",
                                         "--max-cost", "1", "--out", "o"], ["prices"]),
    # config files
    Case("config-missing", ["run", "--config", "missing.yaml", "--out", "o"], ["does not exist"]),
    Case("config-is-a-directory", ["run", "--config", "cfgdir", "--out", "o"], ["directory"], files={"cfgdir/x": "n: 1"}),
    Case("config-not-utf8", ["run", "--config", "latin1.yaml", "--out", "o"], ["UTF-8"],
         files={"latin1.yaml": "n: 5\nout: caf\xe9\n".encode("latin-1")}),
    Case("config-bad-yaml", ["run", "--config", "c.yaml", "--out", "o"], ["not valid YAML"], files={"c.yaml": "n: [1, 2\n"}),
    Case("config-unknown-setting", ["run", "--config", "c.yaml", "--out", "o"], ["colour"], files={"c.yaml": "colour: blue\n"}),
    Case("config-endpoint-scalar-plus-flag", ["run", "--config", "c.yaml", "--base-url", "http://localhost:1/v1",
                                              "--out", "o"], ["endpoint"], files={"c.yaml": "endpoint: 5\n"}),
    Case("config-concurrency-zero", ["run", "--config", "c.yaml", "--out", "o"], ["max_concurrency"],
         files={"c.yaml": "endpoint: {max_concurrency: 0}\n"}),
    Case("config-timeout-negative", ["run", "--config", "c.yaml", "--out", "o"], ["timeout"],
         files={"c.yaml": "endpoint: {timeout: -1}\n"}),
    Case("config-unknown-ambiguity", ["run", "--config", "c.yaml", "--out", "o"], ["sarcasm"],
         files={"c.yaml": "mix: {sarcasm: 1.0}\n"}),
    # catalogs
    Case("catalog-parameters-true", ["run", *RUN, "--catalog", "c.json", "--out", "o"], ["c.json"],
         files={"c.json": openai_tool(parameters=True)}),
    Case("catalog-non-ascii-tool-name", ["run", *RUN, "--catalog", "c.json", "--out", "o"], ["ASCII"],
         files={"c.json": openai_tool(name="réserver_table")}),
    Case("catalog-empty-enum", ["run", *RUN, "--catalog", "c.json", "--out", "o"], ["empty enum"],
         files={"c.json": [empty_enum()]}),
    Case("catalog-domain-without-tools", ["run", *RUN, "--catalog", "c.json", "--out", "o"], ["no tools"],
         files={"c.json": [domain(tools=[])]}),
    Case("catalog-slot-without-values", ["run", *RUN, "--catalog", "c.json", "--out", "o"], ["no values"],
         files={"c.json": [empty_pool()]}),
    Case("catalog-values-for-undeclared-slot", ["run", *RUN, "--catalog", "c.json", "--out", "o"], ["values_for", "weather"],
         files={"c.json": [values_for({"weather": {"rainy": ["Thai"]}})]}),
    Case("catalog-values-for-empty-list", ["run", *RUN, "--catalog", "c.json", "--out", "o"], ["empty values_for list"],
         files={"c.json": [values_for({"city": {"Boston": []}})]}),
    Case("catalog-unique-searched-slot", ["run", *RUN, "--catalog", "c.json", "--out", "o"], ["unique", "find_restaurants"],
         files={"c.json": [unique("city")]}),
    Case("catalog-not-json", ["run", *RUN, "--catalog", "c.json", "--out", "o"], ["JSON"], files={"c.json": "{not json"}),
    Case("catalog-not-utf8", ["run", *RUN, "--catalog", "c.json", "--out", "o"], ["c.json"], files={"c.json": b"\xff\xfe["}),
    Case("catalog-missing", ["run", *RUN, "--catalog", "nope.json", "--out", "o"], ["does not exist"]),
    Case("sgd-intent-without-name", ["run", *RUN, "--catalog", "s.json", "--out", "o"], ["s.json"],
         files={"s.json": sgd(intents=[{k: v for k, v in SGD_INTENTS[1].items() if k != "name"}])}),
    Case("sgd-intent-as-string", ["run", *RUN, "--catalog", "s.json", "--out", "o"], ["s.json"],
         files={"s.json": sgd(intents=["ReserveRestaurant"])}),
    Case("sgd-entity-slot-with-one-value", ["run", *RUN, "--catalog", "s.json", "--out", "o"], ["restaurant_name"],
         files={"s.json": sgd(slots=[{**SGD_SLOTS[0], "possible_values": ["Sakura"]}, *SGD_SLOTS[1:]])}),
    Case("slot-values-not-utf8", ["run", *RUN, "--catalog", "s.json", "--slot-values", "v.json", "--out", "o"], ["v.json"],
         files={"s.json": sgd(), "v.json": b"\xff\xfe{"}),
    Case("slot-values-not-an-object", ["run", *RUN, "--catalog", "s.json", "--slot-values", "v.json", "--out", "o"],
         ["v.json"], files={"s.json": sgd(), "v.json": [1, 2]}),
    # damaged run directories
    Case("manifest-corrupt", ["run", *RUN, "--out", "run"], ["manifest.json"], setup=_corrupt("manifest.json", b"{\"seed\": ")),
    Case("manifest-empty", ["run", *RUN, "--out", "run"], ["manifest.json"], setup=_corrupt("manifest.json", b"")),
    Case("manifest-wrong-shape", ["run", *RUN, "--out", "run"], ["manifest.json"],
         setup=_corrupt("manifest.json", b"[1, 2]")),
    Case("truncated-shard-then-validate", ["validate", *RUN, "--out", "run"], ["corrupt", "shard 0"], setup=_truncate_shard),
    # publish
    Case("publish-nothing-to-do", ["publish", "run"], ["--repo-id"]),
    Case("publish-corrupt-config", ["publish", "run", "--to-dir", "o"], ["config.yaml"],
         setup=_corrupt("config.yaml", b"n: [1, 2\n")),
    Case("publish-config-not-a-mapping", ["publish", "run", "--to-dir", "o"], ["config.yaml"],
         setup=_corrupt("config.yaml", b"- a\n- b\n")),
    Case("publish-to-dir-is-a-file", ["publish", "run", "--to-dir", "f"], ["is a file"], files={"f": "x"}),
    Case("publish-missing-run", ["publish", "nosuchrun", "--to-dir", "o"], ["does not exist"]),
    Case("publish-bad-repo-id", ["publish", "run", "--repo-id", "not a repo"], ["not a valid repo id"]),
    Case("publish-no-ood-and-ood-domain", ["publish", "run", "--to-dir", "o", "--no-ood", "--ood-domain", "hotels"],
         ["contradict"]),
    # import sgd
    Case("import-sgd-missing-dir", ["import", "sgd", "nosuch", "--out", "o"], ["does not exist"]),
    Case("import-sgd-no-dialogues", ["import", "sgd", "empty", "--out", "o"], ["no SGD dialogues"],
         files={"empty/notes.txt": "x"}),
    Case("import-sgd-schema-not-json", ["import", "sgd", "train", "--schema", "s.json", "--out", "o"], ["s.json"],
         files={"train/dialogues_001.json": [], "s.json": "{not json"}),
    Case("import-sgd-over-a-generated-run", ["import", "sgd", "train", "--schema", "s.json", "--out", "run"], ["speakrl run"],
         files={"train/dialogues_001.json": [], "s.json": sgd()}),
    Case("import-sgd-missing-argument", ["import", "sgd"], ["sgd_dir"], usage=True),
    # train / eval
    Case("train-output-dir-is-a-file", ["train", "--recipe", "tiny-cpu", "--dataset", "run", "--output-dir", "f"],
         ["is a file"], files={"f": "x"}),
    Case("eval-output-dir-is-a-file", ["eval", "--model", "m", "--dataset", "run", "--base-url", "http://localhost:1/v1",
                                       "--output-dir", "f"], ["is a file"], files={"f": "x"}),
    Case("eval-base-url-not-a-url", ["eval", "--model", "m", "--dataset", "run", "--base-url", "notaurl"], ["notaurl"]),
    Case("eval-run-without-dataset", ["eval", "--model", "m", "--dataset", "run", "--base-url", "http://localhost:1/v1"],
         ["no dataset/"], setup=lambda root: shutil.rmtree(root / "run" / "dataset")),
    Case("eval-unknown-protocol", ["eval", "--model", "m", "--dataset", "run", "--protocol", "morse"], ["morse"]),
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("finished")
    patch = pytest.MonkeyPatch()
    try:
        assert run_cli(patch, "run", *RUN, "--out", str(root / "run")) == 0
    finally:
        patch.undo()
    return root / "run"


def _complete_looking(root: Path) -> list[str]:
    """Outputs a user could take for finished work, in every directory the case made."""
    found = []
    for path in root.rglob("*"):
        if path.name in ("accepted.jsonl", "stats.json", "README.md", "eval_test.json") or path.suffix == ".parquet":
            found.append(str(path.relative_to(root)))
    return found


def test_the_table_covers_every_subcommand_and_enough_inputs():
    commands = {c.args[0] for c in CASES}
    assert {"run", "scenarios", "dialogues", "validate", "publish", "import", "train", "eval"} <= commands
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_sentence(case: Case, tmp_path, monkeypatch, capsys, finished_run):
    shutil.copytree(finished_run, tmp_path / "run")
    for name, data in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        elif isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        else:
            path.write_text(json.dumps(data), encoding="utf-8")
    if case.setup:
        case.setup(tmp_path)
    before = set(_complete_looking(tmp_path))
    monkeypatch.chdir(tmp_path)
    code = run_cli(monkeypatch, *case.args)
    err = capsys.readouterr().err
    assert code != 0, err
    assert "Traceback" not in err, err
    if case.usage:
        assert code == 2 and "Usage:" in err, err
    else:
        assert code in (2, 3), err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), err  # one sentence, one line
    for word in case.words:
        assert word in " ".join(err.split()), (word, err)
    assert set(_complete_looking(tmp_path)) <= before, "a failed command must not leave outputs that look complete"
    assert not [p for p in tmp_path.rglob("*.tmp")], "no temp file may survive"


@pytest.mark.parametrize(("error", "code", "words"), [
    (OSError(28, "No space left on device", "out/x.jsonl"), 3, ["no space left", "'out/x.jsonl'", "free some space"]),
    (__import__("sqlite3").OperationalError("database or disk is full"), 3, ["no space left"]),
    (PermissionError(13, "Permission denied", "out/x"), 3, ["permission denied", "'out/x'"]),
    (NotADirectoryError(20, "Not a directory", "f/x"), 3, ["a file is in the way"]),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), 2, ["not UTF-8"]),
    (RuntimeError("boom\nsecond line"), 1, ["unexpected RuntimeError: boom second line", "-vv"]),
])
def test_every_failure_class_has_one_sentence_and_a_documented_code(error, code, words):
    from speakrl.cli import error_sentence

    text, got = error_sentence(error)
    assert got == code and "\n" not in text
    for word in words:
        assert word in text, (word, text)


def test_vv_shows_the_traceback_on_request(tmp_path, monkeypatch):
    from speakrl.pipeline.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="greater than 0"):
        run_cli(monkeypatch, "-vv", "run", "--n", "0", "--out", "o")
    assert run_cli(monkeypatch, "run", "--n", "0", "--out", "o") == 2  # and without -vv, one sentence again


def test_an_unreadable_config_or_catalog_is_one_sentence(tmp_path, monkeypatch, capsys):
    # chmod 000 does not stop root (the CI user here), so the read itself is refused.
    real_read = Path.read_text

    def refuse(self, *args, **kwargs):
        if self.name in ("c.yaml", "c.json"):
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self, *args, **kwargs)

    (tmp_path / "c.yaml").write_text("n: 5\n")
    (tmp_path / "c.json").write_text("[]")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Path, "read_text", refuse)
    for args, word in [(["--config", "c.yaml"], "permission denied"), (["--catalog", "c.json"], "Permission denied")]:
        assert run_cli(monkeypatch, "run", *args, "--out", "o") == 2
        err = capsys.readouterr().err
        assert word in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()
