"""Reliability across kills, resumes, budgets, concurrent runs and full disks (issue 13), through the real CLI,
the real `openai` SDK and a local server."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from speakrl.pipeline.llm import LEDGER_FILE, UsageLedger
from speakrl_testing.llm_replay import ReplayResponder
from speakrl_testing.openai_server import OpenAIServer
from speakrl_testing.runs import run_cli

KEY = "sk-speakrl-echoed-KEY-7d1e4b2a9c"
LLM_RUN = ["--n", "36", "--seed", "4", "--shard-size", "6", "--workers", "1", "--backend", "openai", "--mode",
           "paraphrase", "--model", "local-test"]


def _speakrl(*args: str) -> list[str]:
    return [sys.executable, "-c", "from speakrl.cli import main; main()", *args]


def _wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}: {proc.stderr.read() if proc.stderr else ''}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.01)


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def _config(tmp_path: Path, **endpoint) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"endpoint": {"timeout": 5.0, **endpoint}}))
    return path


# --- kill during an LLM run, then resume -----------------------------------------------------------------------

def test_a_killed_llm_run_resumes_to_the_bytes_of_an_uninterrupted_one(tmp_path):
    with OpenAIServer(ReplayResponder(), latency=0.05) as server:
        # One request at a time, so the kill can land after some of a shard's answers are cached and before the
        # shard is written: the resumed run rebuilds those rows from the cache.
        common = [*LLM_RUN, "--base-url", server.base_url, "--config", str(_config(tmp_path, max_concurrency=1))]
        killed = tmp_path / "killed"
        proc = subprocess.Popen(_speakrl("run", *common, "--out", str(killed)), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        _wait_for(lambda: (killed / "dialogues" / "shard-00001.jsonl").exists(), proc, "two shards")
        sent = server.requests
        _wait_for(lambda: server.requests > sent + 3, proc, "three answers for the third shard")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (killed / "accepted.jsonl").exists(), "the kill must land mid-run"
        paid_before_kill = UsageLedger(killed / "cache" / LEDGER_FILE).totals()["dialogues/local-test"]["requests"]
        assert paid_before_kill > 0  # usage is on disk as it is spent, not only when a run finishes

        resumed = subprocess.run(_speakrl("run", *common, "--out", str(killed)), capture_output=True, text=True)
        assert resumed.returncode == 0, resumed.stderr
        clean = tmp_path / "clean"
        assert subprocess.run(_speakrl("run", *common, "--out", str(clean)), capture_output=True).returncode == 0

    assert (killed / "accepted.jsonl").read_bytes() == (clean / "accepted.jsonl").read_bytes()
    assert (killed / "rejected.jsonl").read_bytes() == (clean / "rejected.jsonl").read_bytes()
    for split in (clean / "dataset" / "data").rglob("*.parquet"):
        assert (killed / split.relative_to(clean)).read_bytes() == split.read_bytes()
    # The run's usage counts every request paid for, over both invocations, and the resumed one paid only for
    # what had not arrived before the kill.
    usage = json.loads((killed / "manifest.json").read_text())["stages"]["generate"]["usage"]["dialogues/local-test"]
    clean_usage = json.loads((clean / "manifest.json").read_text())["stages"]["generate"]["usage"]["dialogues/local-test"]
    assert clean_usage["requests"] <= usage["requests"] <= clean_usage["requests"] + 1  # + at most the one in flight
    assert usage["cached"] >= 3  # the resumed run did rebuild rows from the cache


# --- a budget is a promise across invocations -----------------------------------------------------------------

def test_three_invocations_under_one_max_cost_never_exceed_it_by_more_than_the_requests_in_flight(tmp_path, monkeypatch, capsys):
    concurrency = 2
    prices = {"price_input_per_mtok": 10.0, "price_output_per_mtok": 30.0, "max_concurrency": concurrency}
    with OpenAIServer(ReplayResponder()) as server:
        probe = tmp_path / "probe"
        config = str(_config(tmp_path, **prices))
        assert run_cli(monkeypatch, "run", *LLM_RUN, "--config", config, "--base-url", server.base_url, "--out", str(probe)) == 0
        costs = UsageLedger(probe / "cache" / LEDGER_FILE).totals()["dialogues/local-test"]
        per_request = costs["cost"] / costs["requests"]
        limit = 10 * per_request  # a third of the run
        capsys.readouterr()

        run = tmp_path / "budget"
        sent = []
        for _ in range(3):
            before = server.requests
            code = run_cli(monkeypatch, "run", *LLM_RUN, "--config", config, "--base-url", server.base_url,
                           "--out", str(run), "--max-cost", str(limit))
            sent.append(server.requests - before)
            assert code == 2 and "cost limit" in capsys.readouterr().err
    spent = UsageLedger(run / "cache" / LEDGER_FILE).cost()
    # Requests are priced alike within 2x here; what was in flight when the limit was reached may still finish.
    assert spent <= limit + concurrency * 2 * per_request, (spent, limit)
    assert sent[1] == sent[2] == 0  # later invocations know the run's budget is spent and send nothing
    usage = json.loads((run / "manifest.json").read_text())["stages"]["generate"]["usage"]["dialogues/local-test"]
    assert usage["requests"] == sent[0] and usage["cost"] == pytest.approx(spent)  # recorded although stopped


# --- secrets -------------------------------------------------------------------------------------------------

def test_an_echoed_key_reaches_no_file_of_the_run_or_of_the_published_dataset(tmp_path, monkeypatch, capsys):
    replay = ReplayResponder()

    def echo(body):  # an endpoint that echoes the caller's key into its answers (some valid, some not)
        reply = replay(body)
        if "utterances" in reply:
            for u in reply["utterances"][::2]:
                u["text"] += f" (authorized by {KEY})"
        return json.dumps(reply) if len(body["messages"][-1]["content"]) % 3 else f"not json, key {KEY}"

    monkeypatch.setenv("SPEAKRL_ECHO_KEY", KEY)
    with OpenAIServer(echo, api_key=KEY) as server:
        run = tmp_path / "run"
        code = run_cli(monkeypatch, "-v", "run", *LLM_RUN, "--api-key-env", "SPEAKRL_ECHO_KEY", "--base-url",
                       server.base_url, "--out", str(run))
        assert code == 0, capsys.readouterr().err
        assert server.requests > 0
    rejected = [json.loads(line) for line in (run / "rejected.jsonl").read_text().splitlines()]
    assert any("***" in (r.get("raw") or "") for r in rejected), "the echo reached the rows, scrubbed"
    accepted = (run / "accepted.jsonl").read_text()
    assert "authorized by ***" in accepted
    monkeypatch.delenv("SPEAKRL_ECHO_KEY")
    published = subprocess.run(_speakrl("publish", str(run), "--to-dir", str(tmp_path / "pub")), capture_output=True, text=True)
    assert published.returncode == 0, published.stderr
    files = _files(run) + _files(tmp_path / "pub")
    assert any(p.suffix == ".sqlite" for p in files) and any(p.suffix == ".parquet" for p in files)
    assert [str(p) for p in files if KEY.encode() in p.read_bytes()] == []
    assert KEY not in capsys.readouterr().err  # nor in the log lines


def test_credentials_in_the_base_url_never_reach_config_yaml(tmp_path):
    from speakrl.pipeline.runner import load_config, open_run

    url = "https://someone:hunter2-long-secret@llm.example.com/v1?api-key=abc123-secret-key"
    cfg = load_config(None, {"out": str(tmp_path / "r"), "endpoint.base_url": url, "n": 5})
    ctx = open_run(cfg)
    ctx.release()
    text = (tmp_path / "r" / "config.yaml").read_text()
    assert "hunter2" not in text and "abc123" not in text and "someone" not in text
    assert "llm.example.com/v1" in text


# --- one run per directory -----------------------------------------------------------------------------------

def test_a_second_run_on_the_same_out_is_refused_in_one_sentence_and_the_lock_dies_with_its_holder(tmp_path, monkeypatch, capsys):
    args = ["--n", "200000", "--seed", "1", "--shard-size", "500", "--workers", "1"]
    out = tmp_path / "run"
    proc = subprocess.Popen(_speakrl("run", *args, "--out", str(out)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    _wait_for(lambda: (out / "scenarios").is_dir(), proc, "the first run to start")
    code = run_cli(monkeypatch, "run", *args, "--out", str(out))
    err = capsys.readouterr().err
    assert code == 2 and "another speakrl process is using" in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1  # one sentence, one line
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # A crashed holder leaves no lock behind: the next run goes ahead (and resumes).
    small = ["--n", "40", "--seed", "1", "--shard-size", "20", "--workers", "1"]
    assert run_cli(monkeypatch, "run", *small, "--out", str(tmp_path / "other")) == 0
    from speakrl.pipeline.runner import lock_run_dir

    lock_run_dir(out).release()  # free again once its holder is dead


# --- workers die with their parent -----------------------------------------------------------------------------

def test_killing_the_parent_leaves_no_worker_alive_after_5_s(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(_speakrl("run", "--n", "400000", "--shard-size", "400", "--workers", "2", "--out", str(out)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    parent = psutil.Process(proc.pid)

    def workers() -> list[psutil.Process]:
        return [c for c in parent.children(recursive=True) if c.is_running()]

    _wait_for(lambda: len(workers()) >= 2 and any((out / "scenarios").glob("shard-*.jsonl")), proc, "two workers")
    pool = workers()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    gone, alive = psutil.wait_procs(pool, timeout=5)
    assert alive == [], f"workers still alive 5 s after their parent was killed: {alive}"


# --- a full disk ---------------------------------------------------------------------------------------------

def test_a_full_disk_ends_in_one_sentence_and_the_rerun_after_freeing_space_matches(tmp_path, monkeypatch, capsys):
    args = ["--n", "120", "--seed", "2", "--shard-size", "20", "--workers", "1"]
    real_fsync = os.fsync
    calls = {"n": 0}

    def disk_fills_up(fd):  # from the 8th file on, the data written cannot be flushed to disk: the disk is full
        calls["n"] += 1
        if calls["n"] >= 8:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    full = tmp_path / "full"
    monkeypatch.setattr(os, "fsync", disk_fills_up)
    code = run_cli(monkeypatch, "run", *args, "--out", str(full))
    err = capsys.readouterr().err
    message = err[err.index("error:"):]  # after the progress bars
    assert code == 3 and "no space left" in message and "free some space" in message and "Traceback" not in err
    assert len([line for line in message.splitlines() if line.strip()]) == 1  # one sentence, one line
    assert "shard-00001.jsonl" in " ".join(message.split())  # names the file it could not write
    assert not (full / "accepted.jsonl").exists() and not (full / "dataset").exists()
    assert not [p for p in full.rglob("*.tmp")]
    monkeypatch.setattr(os, "fsync", real_fsync)  # space freed
    assert run_cli(monkeypatch, "run", *args, "--out", str(full)) == 0
    assert run_cli(monkeypatch, "run", *args, "--out", str(tmp_path / "clean")) == 0
    assert (full / "accepted.jsonl").read_bytes() == (tmp_path / "clean" / "accepted.jsonl").read_bytes()
    assert (full / "rejected.jsonl").read_bytes() == (tmp_path / "clean" / "rejected.jsonl").read_bytes()


# --- all or nothing ------------------------------------------------------------------------------------------

def test_a_failed_dataset_rebuild_keeps_the_old_dataset_whole(tmp_path, monkeypatch):
    import datasets

    from speakrl.pipeline.runner import generate
    from speakrl.pipeline.stages import publish
    from speakrl.schemas import RunConfig

    cfg = RunConfig(n=60, seed=5, out=str(tmp_path / "run"), shard_size=30, workers=1)
    run = generate(cfg)
    before = {p.relative_to(run / "dataset"): p.read_bytes() for p in _files(run / "dataset")}
    real_build = publish.build_dataset_dir

    def dies_midway(run_dir, out_dir, options=None):  # like a kill after the new shards, before the card
        real_build(run_dir, out_dir, options)
        (Path(out_dir) / "README.md").unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(publish, "build_dataset_dir", dies_midway)
    (run / "stats.json").touch()  # an output changed since the build, so the re-run is not a no-op: it rebuilds
    with pytest.raises(KeyboardInterrupt):
        generate(cfg)
    assert {p.relative_to(run / "dataset"): p.read_bytes() for p in _files(run / "dataset")} == before
    assert not list(run.glob(".dataset.*"))
    assert datasets.load_dataset(str(run / "dataset"), "default")["train"].num_rows > 0


def test_a_run_where_every_row_is_rejected_says_so_and_records_its_counts_and_usage(tmp_path, monkeypatch, capsys):
    with OpenAIServer(lambda body: "this is not the JSON you asked for") as server:
        out = tmp_path / "run"
        code = run_cli(monkeypatch, "run", *LLM_RUN, "--base-url", server.base_url, "--out", str(out))
    err = capsys.readouterr().err
    assert code == 2 and "every one of the 36 generated rows was rejected" in err and "nothing to publish" not in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["generate"]["status"] == "done"
    assert manifest["counts"]["generated"] == 36 == manifest["counts"]["rejected"]
    assert manifest["stages"]["generate"]["usage"]["dialogues/local-test"]["requests"] == server.requests
    assert not (out / "dataset").exists()


def test_staging_copies_of_killed_pushes_are_removed(tmp_path):
    from speakrl.pipeline.hub import remove_stale_staging

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"speakrl-publish-{dead.pid}-abc" / "dataset").mkdir(parents=True)
    (tmp_path / f"speakrl-publish-{os.getpid()}-def").mkdir()  # a live push
    (tmp_path / "someone-elses").mkdir()
    removed = remove_stale_staging(str(tmp_path))
    assert [p.name for p in removed] == [f"speakrl-publish-{dead.pid}-abc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"speakrl-publish-{os.getpid()}-def", "someone-elses"])


def test_shards_are_planned_lazily(tmp_path, monkeypatch):
    import tracemalloc

    from speakrl.pipeline import runner
    from speakrl.schemas import RunConfig

    cfg = RunConfig(n=2_000_000, shard_size=1, workers=1, out=str(tmp_path / "run"))
    ctx = runner.open_run(cfg)
    ran: list[int] = []

    class Enough(Exception):
        pass

    def run_shard(ctx, stage, k, indices, llm=None):
        ran.append(k)
        if len(ran) == 5:
            raise Enough

    monkeypatch.setattr(runner, "_run_shard", run_shard)
    tracemalloc.start()
    try:
        with pytest.raises(Enough):
            runner.run_shards(ctx, "scenarios")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        ctx.release()
    assert ran == [0, 1, 2, 3, 4]
    assert peak < 5_000_000, f"{peak} bytes: a list of two million shard ranges was built up front"


def test_a_failed_publish_to_dir_leaves_the_previous_build_whole(tmp_path, monkeypatch, small_run):
    from speakrl.pipeline.stages import publish

    out = tmp_path / "hub-layout"
    assert run_cli(monkeypatch, "publish", str(small_run), "--to-dir", str(out)) == 0
    before = {p.relative_to(out): p.read_bytes() for p in _files(out)}
    real_build = publish.build_dataset_dir

    def dies_midway(run_dir, out_dir, options=None):
        real_build(run_dir, out_dir, options)
        for shard in Path(out_dir).rglob("*.parquet"):
            shard.unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(publish, "build_dataset_dir", dies_midway)
    assert run_cli(monkeypatch, "publish", str(small_run), "--to-dir", str(out), "--seed", "9") == 130  # interrupted
    assert {p.relative_to(out): p.read_bytes() for p in _files(out)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub-layout"]  # no staging copy left


def test_import_sgd_is_refused_while_another_process_holds_the_run_dir(tmp_path, monkeypatch, capsys):
    from speakrl.pipeline.runner import lock_run_dir

    out = tmp_path / "sgd-run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from speakrl.pipeline.runner import lock_run_dir; held = lock_run_dir(Path(sys.argv[1])); "
                               "print('locked', flush=True); time.sleep(60)", str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        sgd_dir = Path(__file__).resolve().parents[2] / "data" / "sgd" / "dialogues" / "train"
        assert run_cli(monkeypatch, "import", "sgd", str(sgd_dir), "--out", str(out)) == 2
        assert "another speakrl process is using" in capsys.readouterr().err
        assert not (out / "accepted.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    lock_run_dir(out).release()
