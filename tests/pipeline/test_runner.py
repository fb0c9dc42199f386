"""End to end on the offline backend, and kill-and-resume."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speakrl.pipeline.io import read_jsonl
from speakrl.pipeline.runner import generate, load_config
from speakrl.pipeline.errors import RunDirError
from speakrl.schemas import Dialogue, Manifest, Rejection, RunConfig


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_end_to_end_run_directory(small_run):
    stats = json.loads((small_run / "stats.json").read_text())
    accepted = list(read_jsonl(small_run / "accepted.jsonl", Dialogue))
    rejected = list(read_jsonl(small_run / "rejected.jsonl", Rejection))
    assert stats["generated"] == 300 == len(accepted) + len(rejected)
    assert stats["accepted"] == len(accepted) and len(accepted) > 250
    assert len({d.id for d in accepted}) == len(accepted)
    manifest = Manifest.model_validate_json((small_run / "manifest.json").read_text())
    assert manifest.counts["generated"] == 300 and manifest.versions["pydantic"]
    assert load_config(str(small_run / "config.yaml"), {}).n == 300  # the resolved config reloads
    assert set(stats["by_ambiguity"]) >= {"none", "missing_slot", "ambiguous_reference"}


def test_local_dataset_loads_with_datasets(small_run):
    import datasets

    ds = datasets.load_dataset(str(small_run / "dataset"), "default")
    total = sum(len(split) for split in ds.values())
    assert total == len(_lines(small_run / "accepted.jsonl"))
    row = ds["train"][0]
    assert {"messages", "tools"} <= set(row)
    assert row["messages"][0]["role"] == "system"


def test_rerunning_a_finished_run_changes_nothing(small_run):
    before = {p: p.stat().st_mtime_ns for p in small_run.glob("validated/*.jsonl")}
    accepted = (small_run / "accepted.jsonl").read_bytes()
    generate(load_config(str(small_run / "config.yaml"), {}))
    assert {p: p.stat().st_mtime_ns for p in small_run.glob("validated/*.jsonl")} == before
    assert (small_run / "accepted.jsonl").read_bytes() == accepted


def _mtimes(run_dir: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}


def test_a_finished_run_rerun_rewrites_no_file_and_a_damaged_one_is_rebuilt(tmp_path):
    run_dir = generate(RunConfig(n=60, seed=3, out=str(tmp_path / "run"), workers=1, shard_size=30))
    before = _mtimes(run_dir)
    assert any(p.suffix == ".parquet" for p in before) and run_dir / "manifest.json" in before
    generate(load_config(str(run_dir / "config.yaml"), {}))
    assert _mtimes(run_dir) == before  # nothing written: not the manifest, config, dataset or shards
    card = run_dir / "dataset" / "README.md"
    text = card.read_text()
    card.unlink()
    generate(load_config(str(run_dir / "config.yaml"), {}))
    assert card.read_text() == text  # an output gone: the run builds its outputs again, identically


def test_a_run_dir_with_other_settings_is_refused(small_run):
    cfg = load_config(str(small_run / "config.yaml"), {"seed": 99})
    with pytest.raises(RunDirError, match="different settings"):
        generate(cfg)


def test_settings_that_change_no_row_may_differ_on_resume(small_run):
    from speakrl.pipeline.runner import config_hash

    cfg = load_config(str(small_run / "config.yaml"), {})
    same = load_config(str(small_run / "config.yaml"), {"workers": 2, "max_cost": 5.0, "endpoint.max_concurrency": 8})
    assert config_hash(same) == config_hash(cfg)
    assert config_hash(load_config(str(small_run / "config.yaml"), {"endpoint.model": "other"})) != config_hash(cfg)


def test_workers_do_not_change_the_rows(tmp_path):
    one = generate(RunConfig(n=400, seed=5, out=str(tmp_path / "a"), workers=1, shard_size=100))
    two = generate(RunConfig(n=400, seed=5, out=str(tmp_path / "b"), workers=2, shard_size=150))
    assert (one / "accepted.jsonl").read_bytes() == (two / "accepted.jsonl").read_bytes()


def test_a_worker_that_dies_ends_the_run_with_one_sentence_and_loses_nothing(tmp_path, monkeypatch):
    import os

    import speakrl.pipeline.runner as runner

    real = runner._scenarios_for

    def dies_on_shard_2(ctx, k, indices):
        if k == 2:
            os._exit(9)  # as if killed: no exception reaches the pool
        return real(ctx, k, indices)

    monkeypatch.setattr(runner, "_scenarios_for", dies_on_shard_2)  # forked workers inherit it
    cfg = RunConfig(n=400, seed=5, out=str(tmp_path / "r"), workers=2, shard_size=100)
    with pytest.raises(RunDirError, match="worker process died.*running the same command again resumes"):
        generate(cfg)
    monkeypatch.setattr(runner, "_scenarios_for", real)
    resumed = generate(cfg)
    whole = generate(RunConfig(n=400, seed=5, out=str(tmp_path / "whole"), workers=1, shard_size=100))
    assert (resumed / "accepted.jsonl").read_bytes() == (whole / "accepted.jsonl").read_bytes()


def _speakrl(*args: str) -> list[str]:
    return [sys.executable, "-c", "from speakrl.cli import main; main()", *args]


@pytest.mark.slow
def test_killed_run_resumes_to_exactly_the_uninterrupted_rows(tmp_path):
    common = ["--n", "6000", "--seed", "11", "--shard-size", "200", "--workers", "1"]
    killed = tmp_path / "killed"
    log = tmp_path / "killed.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(_speakrl("run", *common, "--out", str(killed)), stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 300
    while not (killed / "validated" / "shard-00002.jsonl").exists():
        assert proc.poll() is None, f"the run ended before it could be killed: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, "the run made no progress in 300 s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "accepted.jsonl").exists(), "the kill must land mid-run"
    done_before = {p.name: p.stat().st_mtime_ns for p in (killed / "validated").glob("shard-*.jsonl")}

    subprocess.run(_speakrl("run", *common, "--out", str(killed)), check=True, capture_output=True)
    clean = tmp_path / "clean"
    subprocess.run(_speakrl("run", *common, "--out", str(clean)), check=True, capture_output=True)

    for name, mtime in done_before.items():  # finished shards were not redone
        assert (killed / "validated" / name).stat().st_mtime_ns == mtime
    assert (killed / "accepted.jsonl").read_bytes() == (clean / "accepted.jsonl").read_bytes()
    assert sorted(_lines(killed / "rejected.jsonl")) == sorted(_lines(clean / "rejected.jsonl"))
    ids = [json.loads(line)["id"] for line in _lines(killed / "accepted.jsonl")]
    assert len(ids) == len(set(ids))
    stats = json.loads((killed / "stats.json").read_text())
    assert stats["generated"] == 6000 == stats["accepted"] + stats["rejected"]
    assert not [p for p in killed.rglob("*.tmp")], "no temp file may survive a completed run"


# --- LLM runs in several processes ------------------------------------------------------------------------------

def _llm_run(tmp_path: Path, name: str, server, workers: int, max_cost: float | None = None, **endpoint):
    """A paraphrase run of 24 scenarios in shards of 6, in `workers` processes; returns (run dir, the parent's LLM)."""
    from speakrl.pipeline.llm import LLM
    from speakrl.schemas.config import EndpointConfig, StageLLMConfig

    cfg = RunConfig(
        n=24, seed=4, out=str(tmp_path / name), workers=workers, shard_size=6, max_cost=max_cost,
        dialogues=StageLLMConfig(backend="openai", mode="paraphrase"),
        endpoint=EndpointConfig(base_url=server.base_url, model="local-test", timeout=5.0, **endpoint),
    )
    with LLM.from_config(cfg, Path(cfg.out) / "cache") as llm:
        return generate(cfg, llm=llm), llm


def test_an_llm_run_in_two_processes_splits_the_endpoint_and_gives_the_same_rows(tmp_path):
    from speakrl_testing.llm_replay import ReplayResponder
    from speakrl_testing.openai_server import OpenAIServer

    with OpenAIServer(ReplayResponder(), latency=0.05) as server:
        one, _ = _llm_run(tmp_path, "one", server, workers=1, max_concurrency=3)
        assert server.requests == 24
    with OpenAIServer(ReplayResponder(), latency=0.05) as server:
        two, llm = _llm_run(tmp_path, "two", server, workers=2, max_concurrency=3)
        assert server.max_in_flight <= 3  # the processes' shares add up to the endpoint's limit
        assert server.requests == 24
        # The parent reports what its workers did: live counters and the usage in the manifest.
        assert llm.snapshot()["done"] == 24 and llm.snapshot()["in_flight"] == 0
        usage = json.loads((two / "manifest.json").read_text())["stages"]["generate"]["usage"]["dialogues/local-test"]
        assert usage["requests"] == 24
    strip = lambda path: [d.model_dump(exclude={"provenance"}) for d in read_jsonl(path, Dialogue)]  # noqa: E731
    assert strip(two / "accepted.jsonl") == strip(one / "accepted.jsonl") != []


def test_llm_workers_are_forked_from_a_server_that_has_imported_what_they_need():
    # The fork server skips a preload module it cannot import, silently; a worker would then import it on its own
    # critical path (or, for a typo, never). Ask a worker which of them it started without.
    import os
    from concurrent.futures import ProcessPoolExecutor

    from speakrl.pipeline import runner

    missing = f"[m for m in {list(runner.LLM_WORKER_MODULES)!r} if m not in __import__('sys').modules]"
    with ProcessPoolExecutor(max_workers=1, mp_context=runner.llm_workers_context(start=True)) as pool:
        assert pool.submit(eval, missing).result() == []
        assert pool.submit(os.getppid).result() != os.getpid()  # forked by the server, not by this process


def test_the_worker_count_of_an_llm_run_is_known_before_openai_is_imported():
    # The CLI starts the workers' fork server once it knows there will be several workers; importing openai first
    # (~0.7 s) would make every worker wait that much longer for its first request.
    import subprocess
    import sys

    code = ("import sys; from speakrl.pipeline import runner; from speakrl.schemas.config import RunConfig; "
            "print(runner.worker_count(RunConfig(workers=4, endpoint={'max_concurrency': 3}), True), 'openai' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["3", "False"]


def test_an_llm_run_sends_the_next_shards_requests_before_this_shard_is_written(tmp_path, monkeypatch):
    """One stream runs through the shards: the endpoint is not left idle while a shard's last rows are validated and
    written. Then the rows are those of a run whose shards each had a stream of their own (row order included)."""
    from speakrl.pipeline import runner
    from speakrl.pipeline.llm import LLM
    from speakrl.schemas.config import EndpointConfig, StageLLMConfig
    from speakrl_testing.llm_replay import ReplayResponder
    from speakrl_testing.openai_server import OpenAIServer

    first_shard = tmp_path / "one" / "dialogues" / "shard-00000.jsonl"
    arrived_before_first_shard = []
    write_jsonl = runner.write_jsonl

    def noting_write_jsonl(path, rows):
        if Path(path) == first_shard:
            arrived_before_first_shard.append(server.requests)  # counted as each request arrives
        return write_jsonl(path, rows)

    monkeypatch.setattr(runner, "write_jsonl", noting_write_jsonl)
    with OpenAIServer(ReplayResponder(), latency=0.05, slow_seconds=0.5) as server:
        # Every 6th request to arrive takes 0.5 s: shard 0 (6 rows) cannot be written before its slow answer, and a
        # stream that runs on into shard 1 sends shard 1's requests meanwhile (3 slots are free). Shard by shard, it
        # would send none.
        server.fault_every("slow", 6)
        one, _ = _llm_run(tmp_path, "one", server, workers=1, max_concurrency=4)
    assert arrived_before_first_shard[0] > 6
    with OpenAIServer(ReplayResponder(), latency=0.05) as server:  # each shard its own stream, as before
        cfg = RunConfig(n=24, seed=4, out=str(tmp_path / "apart"), workers=1, shard_size=6,
                        dialogues=StageLLMConfig(backend="openai", mode="paraphrase"),
                        endpoint=EndpointConfig(base_url=server.base_url, model="local-test", timeout=5.0, max_concurrency=4))
        with LLM.from_config(cfg, Path(cfg.out) / "cache") as llm:
            ctx = runner.open_run(cfg)
            try:
                for k, r in ctx.shards():
                    runner._run_shards(ctx, "validate", [(k, r)], llm)
            finally:
                ctx.release()
            apart = generate(cfg, llm=llm)  # the shards are done: finalize and the dataset
    strip = lambda path: [d.model_dump(exclude={"provenance"}) for d in read_jsonl(path, Dialogue)]  # noqa: E731
    assert strip(apart / "accepted.jsonl") == strip(one / "accepted.jsonl") != []
    rejected = lambda path: [(r.id, r.check) for r in read_jsonl(path, Rejection)]  # noqa: E731
    assert rejected(apart / "rejected.jsonl") == rejected(one / "rejected.jsonl")


def test_processes_share_one_cost_limit(tmp_path):
    from speakrl.pipeline.errors import BudgetExceeded
    from speakrl_testing.llm_replay import ReplayResponder
    from speakrl_testing.openai_server import OpenAIServer

    prices = {"price_input_per_mtok": 10.0, "price_output_per_mtok": 30.0, "max_concurrency": 2}
    with OpenAIServer(ReplayResponder()) as server:
        _, alone = _llm_run(tmp_path, "priced", server, workers=1, **prices)
        per_request = alone.snapshot()["cost"] / 24
        limit = 8 * per_request  # a third of the run: each process alone would stop only after 8 requests
        server_before = server.requests
        with pytest.raises(BudgetExceeded, match="cost limit"):
            _llm_run(tmp_path, "r", server, workers=2, max_cost=limit, **prices)
        sent = server.requests - server_before
        # Together they stopped near 8 (rows differ in length; one request in flight per process may finish);
        # with a limit each, they would have sent about 16.
        assert 5 <= sent <= 12
        _llm_run(tmp_path, "r", server, workers=2, **prices)
        assert server.requests - server_before == 24  # the answers bought before the stop came from the cache


def test_finalize_looks_up_the_workers_dedup_keys_and_recomputes_missing_or_torn_ones(tmp_path, monkeypatch):
    import numpy as np

    from speakrl.pipeline.stages import validate

    cfg = RunConfig(n=90, seed=4, out=str(tmp_path / "run"), shard_size=30, workers=1)
    run = generate(cfg)
    keys = sorted((run / "validated").glob("keys-*.u64"))
    assert len(keys) == 3
    rows = list(read_jsonl(run / "validated" / "shard-00000.jsonl"))
    expected = validate.dedup_keys(rows, cfg.validate_.near_duplicate_threshold, cfg.validate_.num_perm)
    assert keys[0].read_bytes()[8:] == expected.tobytes()  # after an 8-byte hash of the shard and the keys
    outputs = {name: (run / name).read_bytes() for name in ("accepted.jsonl", "rejected.jsonl", "stats.json")}

    computed = []
    real_keys = validate.Deduplicator.keys
    monkeypatch.setattr(validate.Deduplicator, "keys", lambda self, text: computed.append(text) or real_keys(self, text))
    (run / "accepted.jsonl").unlink()  # the finished run is redone from its validated shards
    generate(cfg)
    assert computed == []  # every key was the workers'
    keys[1].unlink()  # a shard validated before keys were written
    torn = keys[2].read_bytes()
    keys[2].write_bytes(torn[:8] + np.zeros(len(torn) // 8 - 1, dtype=np.uint64).tobytes())  # right size, wrong keys
    (run / "accepted.jsonl").unlink()
    generate(cfg)
    assert len(computed) == sum(1 for k in (1, 2) for _ in read_jsonl(run / "validated" / f"shard-{k:05d}.jsonl"))
    assert {name: (run / name).read_bytes() for name in outputs} == outputs


def test_finalize_keeps_a_row_whose_text_holds_a_unicode_line_separator(tmp_path):
    """JSON leaves U+2028 and U+0085 unescaped inside a string (an LLM's text may hold them); finalize splits rows at
    newlines only, so such a row is kept whole, not read as a corrupt shard."""
    import orjson

    cfg = RunConfig(n=20, seed=4, out=str(tmp_path / "run"), shard_size=20, workers=1)
    run = generate(cfg)
    shard = run / "validated" / "shard-00000.jsonl"
    rows = [orjson.loads(line) for line in shard.read_bytes().splitlines()]
    user = next(m for m in rows[0]["messages"] if m["role"] == "user")
    user["content"] += "\u2028Thanks\u0085again."
    shard.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    assert "\u2028".encode() in shard.read_bytes()  # unescaped, as orjson and pydantic write it
    accepted = len(_lines(run / "accepted.jsonl"))
    (run / "accepted.jsonl").unlink()
    generate(cfg)
    kept = [json.loads(line) for line in (run / "accepted.jsonl").read_bytes().splitlines()]
    assert len(kept) == accepted
    assert any("\u2028Thanks\u0085again." in (m["content"] or "") for row in kept for m in row["messages"])

