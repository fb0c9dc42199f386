"""The runner: stages over shards of the run, with resume.

The run is cut into shards of `shard_size` scenario indices. Each stage writes one file per shard,
atomically, so a killed run resumes at the first shard whose file is missing and never redoes a finished
one; and since every scenario is a pure function of (seed, index), the resumed run produces exactly the
rows an uninterrupted one would. Deduplication is a single ordered pass at the end, so it too is independent
of where the run was interrupted.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import logging
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.util
import os
import shutil
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, CancelledError, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
import yaml

from speakrl.pipeline import secrets
from speakrl.pipeline.errors import ConfigError, RunDirError
from speakrl.pipeline.io import (
    atomic_write_text,
    build_dir_atomically,
    dump_row,
    read_jsonl,
    release_freed_memory,
    write_jsonl,
)
from speakrl.schemas.catalog import Catalog
from speakrl.schemas.config import RunConfig
from speakrl.schemas.dialogue import Dialogue, Rejection, Scenario
from speakrl.schemas.manifest import Manifest, StageRecord

logger = logging.getLogger(__name__)

STAGES = ("scenarios", "dialogues", "validate")
Progress = Callable[[str, int], None]  # (stage, rows done) -> None
# Settings that change no row: a run may be resumed with other values for them (a larger --max-cost after the
# budget ran out, a lower concurrency after rate limits...).
_RESUMABLE_KEYS = {"out", "workers", "max_cost"}
_RESUMABLE_ENDPOINT_KEYS = {"api_key_env", "max_concurrency", "requests_per_minute", "tokens_per_minute", "timeout",
                            "max_retries"}


def versions() -> dict[str, str]:
    out = {}
    for pkg in ("speakrl", "pydantic", "datasets", "openai", "datasketch"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def config_hash(cfg: RunConfig) -> str:
    data = {k: v for k, v in cfg.model_dump(mode="json", by_alias=True).items() if k not in _RESUMABLE_KEYS}
    data["endpoint"] = {k: v for k, v in data["endpoint"].items() if k not in _RESUMABLE_ENDPOINT_KEYS}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class RunContext:
    cfg: RunConfig
    dir: Path
    lock: Any = None  # the run directory's lock, held by the process that opened the run

    # Loaded when first used, so a re-run of a finished run loads none of them.
    @cached_property
    def catalog(self) -> Catalog:
        from speakrl.pipeline.catalog import load_catalog

        return load_catalog(self.cfg.catalog, self.cfg.slot_values)

    @cached_property
    def sim(self) -> Any:
        """The catalog's simulator (building it compiles every tool's argument schema; the main process of a
        multi-worker run never uses it)."""
        from speakrl.pipeline.catalog.sim import Simulator

        return Simulator(self.catalog)

    @cached_property
    def versions(self) -> dict[str, str]:
        return versions()

    def shards(self) -> Iterator[tuple[int, range]]:
        """(shard number, scenario indices) of every shard, planned lazily: a huge --n costs no memory up front."""
        size = self.cfg.shard_size
        return ((k, range(start, min(start + size, self.cfg.n))) for k, start in enumerate(range(0, self.cfg.n, size)))

    def release(self) -> None:
        """Let another process open this run directory."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def path(self, stage: str, k: int, kind: str = "shard") -> Path:
        return self.dir / stage / f"{kind}-{k:05d}.jsonl"


def open_run(cfg: RunConfig) -> RunContext:
    """Create or reopen the run directory; refuse to mix a different config into an existing run."""
    run_dir = Path(cfg.out)
    ctx = RunContext(cfg, run_dir)
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.exists():
        ctx.catalog  # noqa: B018 - loaded first: a bad catalog leaves no run dir behind
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise RunDirError(f"cannot write to output directory {str(run_dir)!r} ({e.strerror}); choose another --out") from None
    ctx.lock = lock = lock_run_dir(run_dir)
    try:
        finished = False
        if manifest_path.exists():
            old = _read_json(manifest_path, "manifest.json")
            if not isinstance(old, dict):
                raise RunDirError(f"manifest.json in {str(run_dir)!r} is not a JSON object; delete the run directory "
                                  "and run again")
            if old.get("config_hash") != config_hash(cfg):
                raise RunDirError(f"{str(run_dir)!r} holds a run made with different settings; use a new --out or delete it")
            finished = bool(old.get("outputs")) and output_fingerprints(run_dir) == old["outputs"]
        if not finished:
            ctx.catalog  # noqa: B018 - loaded now: a catalog file gone bad is one sentence here, not a worker's failure
        _remove_leftovers(run_dir)
        config_text = yaml.safe_dump(written_config(cfg), sort_keys=False)
        config_path = run_dir / "config.yaml"
        if not config_path.is_file() or config_path.read_text(encoding="utf-8") != config_text:  # a re-run rewrites nothing
            atomic_write_text(config_path, config_text)
        if not manifest_path.exists():
            write_manifest(ctx, Manifest(speakrl_version=ctx.versions["speakrl"], created=_now(), seed=cfg.seed, n=cfg.n,
                                         config_hash=config_hash(cfg), versions=ctx.versions))
    except BaseException:
        lock.release()
        raise
    return ctx


def lock_run_dir(run_dir: Path) -> Any:
    """Hold `run_dir/.lock` (an OS file lock: released when the process ends, however it ends) or refuse at once."""
    from filelock import FileLock, Timeout

    lock = FileLock(run_dir / ".lock", timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunDirError(f"another speakrl process is using {str(run_dir)!r}; wait for it to finish or choose "
                          "another --out") from None
    return lock


def _remove_leftovers(run_dir: Path) -> None:
    """Temp files, half-swapped dataset builds and build scratch of a killed process (the lock says none is running)."""
    for path in [*run_dir.glob(".*.tmp"), *run_dir.glob(".dataset.building-*"), *run_dir.glob(".dataset.old-*"),
                 *run_dir.glob(".speakrl-parts-*")]:  # publish.PARTS_PREFIX
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def written_config(cfg: RunConfig) -> dict[str, Any]:
    """The config as written to config.yaml: credentials in the endpoint URL replaced by `***`."""
    data = cfg.model_dump(mode="json", by_alias=True)
    data["endpoint"]["base_url"] = secrets.redact_url(data["endpoint"]["base_url"])
    return data


def _read_json(path: Path, name: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise RunDirError(f"{name} in {str(path.parent)!r} is corrupt (not JSON); delete the run directory and run "
                          "again") from None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_manifest(ctx: RunContext) -> Manifest:
    from pydantic import ValidationError

    try:
        return Manifest.model_validate(_read_json(ctx.dir / "manifest.json", "manifest.json"))
    except ValidationError:
        raise RunDirError(f"manifest.json in {str(ctx.dir)!r} does not match the manifest format; delete the run "
                          "directory and run again") from None


def write_manifest(ctx: RunContext, manifest: Manifest) -> None:
    atomic_write_text(ctx.dir / "manifest.json", manifest.model_dump_json(indent=2))


# --- per-shard work (runs in worker processes) ----------------------------------------------------------------
# The stages are imported where they are used: a re-run of a finished run imports none of them (numpy, phrasings).

_WORKER: RunContext | None = None
_WORKER_LLM: Any = None  # the worker's share of the endpoint, in LLM runs


def _exit_with_parent(parent: int) -> None:
    """A worker whose parent died (kill -9 of the main process) exits within a second instead of running on."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)


def _init_worker(cfg: RunConfig, shared_llm: Any = None) -> None:
    global _WORKER, _WORKER_LLM
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the CLI's handler, inherited through fork
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="speakrl-parent-watch", daemon=True).start()
    _WORKER = RunContext(cfg, Path(cfg.out))
    if shared_llm is not None:
        from speakrl.pipeline.llm import LLM

        _WORKER_LLM = LLM.from_config(cfg, Path(cfg.out) / "cache", shared=shared_llm)
        # datasketch (it imports scipy) is needed only to check the first answer: imported while the first requests
        # are in flight, not in the fork server, where every worker would wait for it (about half its ~2 s)
        threading.Thread(target=importlib.import_module, args=("datasketch",), name="speakrl-import-datasketch",
                         daemon=True).start()
        # Workers end without running atexit hooks; this closes the HTTP client and the cache cleanly.
        multiprocessing.util.Finalize(_WORKER_LLM, _WORKER_LLM.close, exitpriority=10)


def corrupt_shard(ctx: RunContext, k: int, error: BaseException) -> RunDirError:
    """The error for a shard file that does not parse (damaged after it was written: shards are written atomically)."""
    name = f"{k:05d}.jsonl"
    return RunDirError(f"shard {k} of {str(ctx.dir)!r} is corrupt ({type(error).__name__}); delete its files "
                       f"(shard-{name} and rejected-{name} in scenarios/, dialogues/ and validated/) and run the same "
                       "command again to redo it")


def _read_shard(ctx: RunContext, k: int, path: Path, model: type) -> list:
    try:
        return list(read_jsonl(path, model))
    except (ValueError, KeyError, TypeError) as e:  # pydantic's ValidationError and JSON errors are ValueErrors
        raise corrupt_shard(ctx, k, e) from None


def _scenarios_for(ctx: RunContext, k: int, indices: range) -> Iterator[Scenario]:
    """Shard k's scenarios as a stream: read from its shard file, or made as they are pulled (the file is written
    once the last one has been)."""
    path = ctx.path("scenarios", k)
    if path.exists():
        yield from _read_shard(ctx, k, path, Scenario)
        return
    from speakrl.pipeline.stages import scenarios as scenarios_stage

    rows = []
    for row in scenarios_stage.run(ctx.cfg, ctx.catalog, indices, ctx.sim):
        rows.append(row)
        yield row
    write_jsonl(path, rows)


def _drafts(ctx: RunContext, scenarios: Iterable[Scenario]) -> Iterator[Dialogue]:
    """The offline dialogues of `scenarios`, one each, in order."""
    from speakrl.pipeline.stages import dialogues as dialogues_stage

    return dialogues_stage.run(ctx.cfg, ctx.catalog, scenarios, ctx.sim, ctx.versions)


def _llm_rows(ctx: RunContext, shards: Iterable[tuple[int, range]], llm: Any) -> Iterator[Dialogue | Rejection]:
    """The LLM's rows of several shards, one per scenario and in order, from one stream: offline drafts of each shard's
    scenarios, paraphrased or judged. The requests of the next shard go out while the last answers of the one before
    arrive and are validated, so the endpoint's slots do not empty at every shard boundary."""
    from speakrl.pipeline.stages import llm_dialogues

    if ctx.cfg.dialogues.backend != "openai":  # offline dialogues, judged by the LLM (validate.judge)
        return llm_dialogues.judge_stream(ctx.cfg, (d for k, r in shards for d in _drafts(ctx, _scenarios_for(ctx, k, r))), llm)
    per_shard = (itertools.tee(_scenarios_for(ctx, k, r)) for k, r in shards)  # made as the stream reaches the shard
    pairs = ((s, d) for scenarios, for_drafts in per_shard for s, d in zip(scenarios, _drafts(ctx, for_drafts)))
    for_scenarios, for_drafts = itertools.tee(pairs)
    return llm_dialogues.run_stream(ctx.cfg, (s for s, _ in for_scenarios), (d for _, d in for_drafts), llm, ctx.sim,
                                    ctx.catalog)


def _dialogues_for(ctx: RunContext, k: int, indices: range, llm: Any = None,
                   made: Iterable[Dialogue | Rejection] | None = None) -> Iterator[Dialogue]:
    """Shard k's dialogues as a stream: read from its shard file, or made as they are pulled (offline drafts, then
    the LLM's rows, whose requests go out while the rows before them are validated; `made`: this shard's rows of a
    stream through several shards, `_llm_rows`). The shard's files are written once its last row has been pulled:
    a shard left unfinished writes nothing."""
    path, rejected_path = ctx.path("dialogues", k), ctx.path("dialogues", k, "rejected")
    if path.exists():
        yield from _read_shard(ctx, k, path, Dialogue)
        return
    if made is None and llm is not None:
        made = _llm_rows(ctx, [(k, indices)], llm)
    elif made is None:
        made = _drafts(ctx, _scenarios_for(ctx, k, indices))
    kept: list[Dialogue] = []
    rejected: list[Rejection] = []
    for row in made:
        if isinstance(row, Rejection):
            rejected.append(row)
        else:
            kept.append(row)
            yield row
    if len(kept) + len(rejected) != len(indices):  # a programming error: rows of another shard would be filed here
        raise RuntimeError(f"shard {k} got {len(kept) + len(rejected)} rows for {len(indices)} scenarios")
    write_jsonl(rejected_path, rejected)  # first: the shard file marks the shard done
    write_jsonl(path, kept)


def _validated_for(ctx: RunContext, k: int, indices: range, llm: Any = None,
                   made: Iterable[Dialogue | Rejection] | None = None) -> None:
    from speakrl.pipeline.stages import validate as validate_stage

    path, rejected_path = ctx.path("validated", k), ctx.path("validated", k, "rejected")
    if not path.exists():
        checks = validate_stage.Context.build(ctx.catalog, ctx.sim)
        checked = validate_stage.run(_dialogues_for(ctx, k, indices, llm, made), checks)
        accepted: list[Dialogue] = []
        rejected: list[Rejection] = []

        def kept() -> Iterator[Dialogue]:
            for row in checked:
                if isinstance(row, Dialogue):
                    accepted.append(row)
                    yield row
                else:
                    rejected.append(row)

        # Each row is checked, and its dedup keys computed, as it arrives: in LLM runs, while later requests are in
        # flight. The keys are computed here in the workers, so the ordered pass (`finalize`) only looks them up.
        v = ctx.cfg.validate_
        keys = validate_stage.dedup_keys(kept(), v.near_duplicate_threshold, v.num_perm)
        write_jsonl(rejected_path, rejected)
        write_jsonl(path, accepted)  # the shard file marks the shard done
        _write_keys(ctx, k, path.read_bytes(), keys)


def _keys_path(ctx: RunContext, k: int) -> Path:
    return ctx.dir / "validated" / f"keys-{k:05d}.u64"


def _write_keys(ctx: RunContext, k: int, shard: bytes, keys: Any) -> None:
    """Validated shard k's dedup keys, after its shard file and headed by a hash of both: a cache that finalize uses
    only if it matches the shard as written (so it needs no fsync: a torn or missing file is recomputed)."""
    from speakrl.pipeline.stages import validate as validate_stage

    payload = keys.tobytes()
    path, tmp = _keys_path(ctx, k), _keys_path(ctx, k).with_name(f".keys-{k:05d}.u64.tmp")
    tmp.write_bytes(validate_stage.hash64(shard + payload).to_bytes(8, "little") + payload)
    os.replace(tmp, path)


def _shard_keys(ctx: RunContext, k: int, shard: bytes, rows: int) -> Any:
    """The dedup keys a worker wrote for validated shard k (rows x (1 + bands) uint64), or None when there are
    none (a shard validated by an older version, a worker killed before writing them) or they do not match the
    shard: then finalize computes them."""
    import numpy as np

    from speakrl.pipeline.stages import validate as validate_stage

    path = _keys_path(ctx, k)
    if not rows or not path.is_file():
        return None
    data = path.read_bytes()
    head, payload = data[:8], data[8:]
    width = len(payload) // (8 * rows)
    if width < 2 or len(payload) != 8 * rows * width or head != validate_stage.hash64(shard + payload).to_bytes(8, "little"):
        return None
    return np.frombuffer(payload, dtype=np.uint64).reshape(rows, width)


def _run_shard(ctx: RunContext, stage: str, k: int, indices: range, llm: Any = None,
               made: Iterable[Dialogue | Rejection] | None = None) -> None:
    if stage == "scenarios":
        deque(_scenarios_for(ctx, k, indices), maxlen=0)  # run to the end: writes the shard
    elif stage == "dialogues":
        deque(_dialogues_for(ctx, k, indices, llm, made), maxlen=0)  # run to the end: writes the shard
    else:
        _validated_for(ctx, k, indices, llm, made)


def _run_shards(ctx: RunContext, stage: str, shards: Iterable[tuple[int, range]], llm: Any = None,
                done: Callable[[int], None] | None = None) -> None:
    """Run `stage` on `shards` in this process, calling `done(rows)` after each. In LLM runs the shards' new rows come
    from one stream (`_llm_rows`), so the endpoint stays busy from one shard into the next."""
    if llm is None or stage == "scenarios":
        for k, r in shards:
            _run_shard(ctx, stage, k, r, llm)
            if done:
                done(len(r))
        return
    # Whether a shard's dialogues are still to make is decided once, where the stream reaches it (ahead of the loop
    # below); only this loop writes them, so the answer holds when the loop gets there.
    for_stream, todo = itertools.tee((k, r, not ctx.path("dialogues", k).exists()) for k, r in shards)
    made = _llm_rows(ctx, ((k, r) for k, r, new in for_stream if new), llm)
    try:
        for k, r, new in todo:
            _run_shard(ctx, stage, k, r, llm, itertools.islice(made, len(r)) if new else None)
            if done:
                done(len(r))
    finally:
        made.close()  # waits for the requests in flight: their answers are cached for the next run


def _shards_job(stage: str, shards: list[tuple[int, int, int]]) -> tuple[int, Any]:
    assert _WORKER is not None
    _run_shards(_WORKER, stage, [(k, range(start, stop)) for k, start, stop in shards], _WORKER_LLM)
    usage = (_WORKER_LLM.index, _WORKER_LLM.usage_summary()) if _WORKER_LLM is not None else None
    return sum(stop - start for _, start, stop in shards), usage


LLM_SHARDS_PER_JOB = 4  # consecutive shards a worker streams as one; the parent hears of them when all are done


def worker_count(cfg: RunConfig, uses_llm: bool) -> int:
    """The most worker processes a run's stages use: `workers` (0: one per core), and in LLM runs no more than the
    endpoint's limits can be split between."""
    workers = cfg.workers or os.cpu_count() or 1
    if uses_llm:  # read from the config, not the LLM module: its imports (openai) would delay the fork server
        workers = min(workers, cfg.endpoint.max_processes)
    return workers


# What an LLM run's worker imports before its first request (datasketch later: `_init_worker`).
LLM_WORKER_MODULES = ("speakrl.pipeline.runner", "speakrl.pipeline.llm", "speakrl.pipeline.stages.scenarios",
                      "speakrl.pipeline.stages.dialogues", "speakrl.pipeline.stages.llm_dialogues",
                      "speakrl.pipeline.stages.validate")


def llm_workers_context(start: bool = False) -> Any:
    """How an LLM run starts its worker processes: forked from a fork server. Forking the main process itself
    could deadlock a worker (its threads, the LLM's loop and the progress display, may hold locks); the fork
    server is a fresh single-threaded interpreter that imports `LLM_WORKER_MODULES` once and forks each worker with
    them loaded, where a spawned worker would spend ~1.5 s importing them before its first request.
    `start`: start the server now, so that it imports while the caller sets up the run."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(LLM_WORKER_MODULES))
    if start:
        multiprocessing.forkserver.ensure_running()
    return context


def run_shards(ctx: RunContext, stage: str, progress: Progress | None = None, llm: Any = None) -> None:
    """Run `stage` (and whatever it needs before it) on every shard whose output is missing.

    Shards run in `workers` processes. In LLM runs each process gets its share of the endpoint's limits
    (they add up to the limits) and they spend from one cost limit: one core cannot keep up with the SDK's
    per-request work at high concurrency, nor with prompt rendering and checks besides. A worker then takes
    a few consecutive shards at a time and streams them as one (`_run_shards`).
    """
    out_dir = {"scenarios": "scenarios", "dialogues": "dialogues", "validate": "validated"}[stage]

    def pending() -> Iterator[tuple[int, range]]:  # lazily: no list of every shard
        for k, r in ctx.shards():
            if not ctx.path(out_dir, k).exists():
                yield k, r
            elif progress:
                progress(stage, len(r))

    def done(rows: int) -> None:
        if progress:
            progress(stage, rows)

    workers = worker_count(ctx.cfg, llm is not None)
    todo = pending()
    head = list(itertools.islice(todo, workers))  # enough to know whether a pool is worth starting
    workers = min(workers, len(head))
    todo = itertools.chain(head, todo)
    if workers <= 1:
        _run_shards(ctx, stage, todo, llm, done)
        return
    per_job = 1
    if llm is not None and stage != "scenarios":  # enough jobs to go round the workers, a few shards each
        per_job = max(1, min(LLM_SHARDS_PER_JOB, -(-ctx.cfg.n // ctx.cfg.shard_size) // workers))
    jobs = iter(lambda: list(itertools.islice(todo, per_job)), [])
    pool_args: dict[str, Any] = {"initializer": _init_worker, "initargs": (ctx.cfg,)}
    if llm is None and stage == "validate":
        # Validation's MinHash needs datasketch (it imports scipy, ~0.6 s of CPU): imported once here, the forked
        # workers inherit it instead of each importing it, and finalize and the dataset build find it loaded.
        importlib.import_module("datasketch")
    if llm is not None:
        pool_args = {"initializer": _init_worker, "initargs": (ctx.cfg, llm.share(workers)), "mp_context": llm_workers_context()}
    with ProcessPoolExecutor(max_workers=workers, **pool_args) as pool:
        futures: dict[Any, int] = {}  # a job's future -> its first shard
        failures: dict[int, BaseException] = {}

        def submit_next() -> None:  # a bounded window of queued jobs, so planning stays lazy
            while not failures and len(futures) < 2 * workers:
                job = next(jobs, None)
                if job is None:
                    return
                futures[pool.submit(_shards_job, stage, [(k, r.start, r.stop) for k, r in job])] = job[0][0]

        submit_next()
        while futures:
            finished, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in finished:
                k = futures.pop(future)
                try:
                    rows, usage = future.result()
                except CancelledError:
                    continue
                except BaseException as e:  # noqa: BLE001 - re-raised below, once the running shards are done
                    failures[k] = e
                    for other in futures:  # start no new shard; the running ones finish and are kept
                        other.cancel()
                    continue
                if usage is not None:
                    llm.record_worker_usage(*usage)
                if progress:
                    progress(stage, rows)
            submit_next()
        if failures:
            first = failures[min(failures)]  # the first shard's failure, whatever the timing
            if isinstance(first, BrokenProcessPool):  # killed (out of memory, a signal): no exception to show
                raise RunDirError(f"a worker process died while running the {stage} stage; finished shards are "
                                  "kept, so running the same command again resumes (fewer --workers uses less memory)")
            raise first


# --- the final, ordered pass ----------------------------------------------------------------------------------


def finalize(ctx: RunContext) -> dict[str, Any]:
    """Deduplicate the validated shards in run order, write accepted.jsonl, rejected.jsonl and stats.json."""
    from speakrl.pipeline.stages import validate as validate_stage

    cfg = ctx.cfg
    dedup = validate_stage.Deduplicator(cfg.validate_.near_duplicate_threshold, cfg.validate_.num_perm)
    tally = Tally()
    rejected_counts: Counter[str] = Counter()
    accepted_tmp = ctx.dir / ".accepted.jsonl.tmp"
    rejected_tmp = ctx.dir / ".rejected.jsonl.tmp"
    try:  # a failure (a corrupt shard, a full disk) leaves no temp file behind
        with open(accepted_tmp, "wb") as acc, open(rejected_tmp, "wb") as rej:
            for k, _ in ctx.shards():
                try:
                    for stage_dir in ("dialogues", "validated"):
                        path = ctx.path(stage_dir, k, "rejected")
                        if path.exists():
                            for line in path.read_bytes().splitlines(keepends=True):
                                rejected_counts[orjson.loads(line)["check"]] += 1
                                rej.write(line)
                    # Rows stay JSON here: they were validated when written, and re-parsing them costs more than the dedup.
                    # An accepted row is copied as the bytes it was read from, not serialized again. Bytes split at
                    # newlines alone: `str.splitlines` also splits at a U+2028 or U+0085, which JSON leaves unescaped
                    # inside a string (an LLM's text may hold one), and the row then read as a corrupt shard.
                    shard = ctx.path("validated", k).read_bytes()
                    lines = shard.splitlines(keepends=True)
                    rows = (orjson.loads(line) for line in lines)
                    keys = _shard_keys(ctx, k, shard, len(lines))
                    kept = []
                    for line, out in zip(lines, validate_stage.deduplicate(rows, dedup, keys)):  # one output per row, in order
                        if isinstance(out, Rejection):
                            rejected_counts[out.check] += 1
                            rej.write((dump_row(out) + "\n").encode("utf-8"))
                        else:
                            kept.append(line)
                            tally.add(summary_record(out))
                    acc.write(shard if len(kept) == len(lines) else b"".join(kept))
                except (ValueError, KeyError, TypeError, IndexError) as e:  # JSON or row shape errors
                    raise corrupt_shard(ctx, k, e) from None
        os.replace(accepted_tmp, ctx.dir / "accepted.jsonl")
        os.replace(rejected_tmp, ctx.dir / "rejected.jsonl")
    except BaseException:
        accepted_tmp.unlink(missing_ok=True)
        rejected_tmp.unlink(missing_ok=True)
        raise
    stats = tally.stats(rejected_counts, cfg.n)
    atomic_write_text(ctx.dir / "stats.json", json.dumps(stats, indent=2))
    return stats


def summary_record(row: dict[str, Any]) -> dict[str, Any]:
    """The few fields statistics need (from a dialogue's JSON form), so stats never hold whole dialogues."""
    return {
        "domain": row["domain"],
        "tool": row["gold_calls"][-1]["name"] if row["gold_calls"] else "",
        "ambiguity": row["ambiguities"][0]["type"] if row["ambiguities"] else "none",
        "turns": sum(1 for m in row["messages"] if m["role"] in ("user", "assistant")),
        "questions": sum(1 for lab in row["labels"] if lab["act"] == "clarify"),
    }


class Tally:
    """Counts by domain, tool, ambiguity type, turns and questions, kept as counters while rows stream past (a
    run's records are never all in memory)."""

    COLUMNS = ("domain", "tool", "ambiguity", "turns", "questions")

    def __init__(self) -> None:
        self.counts: dict[str, Counter] = {col: Counter() for col in self.COLUMNS}
        self.n = 0

    def add(self, record: dict[str, Any]) -> None:
        self.n += 1
        for col in self.COLUMNS:
            self.counts[col][record[col]] += 1

    def stats(self, rejected: Counter[str], generated: int) -> dict[str, Any]:
        """The run's stats.json: totals, `dropped_<check>` counts, and counts by column (most frequent first)."""
        stats: dict[str, Any] = {
            "generated": generated,
            "accepted": self.n,
            "rejected": sum(rejected.values()),
            **{f"dropped_{code}": n for code, n in sorted(rejected.items())},
        }
        if self.n:

            def counts(col: str) -> dict[str, int]:
                ranked = sorted(self.counts[col].items(), key=lambda kv: (-kv[1], kv[0]))
                return {str(k): v for k, v in ranked}

            turns = self.counts["turns"]
            stats.update(
                by_domain=counts("domain"), by_tool=counts("tool"), by_ambiguity=counts("ambiguity"),
                by_turns=counts("turns"), by_questions=counts("questions"),
                mean_turns=round(sum(k * v for k, v in turns.items()) / self.n, 3),
                control_share=round(self.counts["ambiguity"]["none"] / self.n, 4),
            )
        return stats


def generate(cfg: RunConfig, progress: Progress | None = None, llm: Any = None, ctx: RunContext | None = None,
             before_build: Callable[[], None] | None = None) -> Path:
    """Run every stage (resuming whatever is already done) and return the run directory.

    `before_build` is called once the rows are final, before the dataset build: the build forks its worker
    processes only if this process runs no other thread (a fork could deadlock on a lock one holds), and spawns
    them otherwise, each importing datasets and pyarrow again (~2 s of CPU each). A caller with a progress display or
    an LLM client stops them there."""
    opened = ctx is None
    ctx = ctx or open_run(cfg)
    try:
        manifest = read_manifest(ctx)
        if outputs_unchanged(ctx.dir, manifest):
            logger.info("%s is a finished run with its outputs unchanged; nothing to do", ctx.dir)
            return ctx.dir
        t0 = time.perf_counter()
        try:
            run_shards(ctx, "validate", progress, llm)
        finally:  # stopped by the budget, an outage or a kill signal: what was spent is in the manifest too
            record_usage(ctx)
        t1 = time.perf_counter()
        stats = finalize(ctx)
        release_freed_memory()  # finalize's dedup index: ~150 MB at a million rows, kept by the allocator otherwise
        t2 = time.perf_counter()
        if stats["accepted"]:
            if before_build is not None:
                before_build()
            build_local_dataset(ctx)
        t3 = time.perf_counter()
        manifest = read_manifest(ctx)
        manifest.stages["generate"] = StageRecord(status="done", seconds=round(t1 - t0, 3),
                                                  usage=manifest.stages.get("generate", StageRecord()).usage)
        manifest.stages["finalize"] = StageRecord(status="done", seconds=round(t2 - t1, 3))
        manifest.stages["dataset"] = StageRecord(status="done", seconds=round(t3 - t2, 3))
        manifest.counts = {k: v for k, v in stats.items() if isinstance(v, int)}
        finished = stats["accepted"] and stats["generated"] == stats["accepted"] + stats["rejected"]
        manifest.outputs = output_fingerprints(ctx.dir) if finished else {}
        write_manifest(ctx, manifest)
        if stats["generated"] != stats["accepted"] + stats["rejected"]:
            raise RunDirError(f"run {str(ctx.dir)!r} is inconsistent: {stats['generated']} generated but "
                              f"{stats['accepted']} accepted and {stats['rejected']} rejected; delete it and run again")
        if not stats["accepted"]:
            reasons = sorted((k for k in stats if k.startswith("dropped_")), key=lambda k: -stats[k])
            top = f" (most often {reasons[0][len('dropped_'):]})" if reasons else ""
            raise RunDirError(f"every one of the {stats['generated']} generated rows was rejected{top}, so no dataset "
                              f"was built; read the reasons in {str(ctx.dir / 'rejected.jsonl')!r}")
    finally:
        if opened:
            ctx.release()
    return ctx.dir


def record_usage(ctx: RunContext) -> None:
    """Copy the run's usage ledger (every invocation's paid and failed requests) into the manifest."""
    from speakrl.pipeline.llm import LEDGER_FILE, UsageLedger

    path = ctx.dir / "cache" / LEDGER_FILE
    if not path.exists():
        return
    manifest = read_manifest(ctx)
    record = manifest.stages.setdefault("generate", StageRecord(status="running"))
    record.usage = UsageLedger(path).totals()
    write_manifest(ctx, manifest)


_OUTPUTS = ("accepted.jsonl", "rejected.jsonl", "stats.json")


def output_fingerprints(run_dir: Path) -> dict[str, list[int]]:
    """Size and mtime of each final output of a run (the dataset directory included), by relative path."""
    paths = [run_dir / name for name in _OUTPUTS if (run_dir / name).is_file()]
    dataset = run_dir / "dataset"
    if dataset.is_dir():
        paths += sorted(p for p in dataset.rglob("*") if p.is_file() and not p.name.startswith("."))
    return {p.relative_to(run_dir).as_posix(): [st.st_size, st.st_mtime_ns] for p in paths for st in [p.stat()]}


def outputs_unchanged(run_dir: Path, manifest: Manifest) -> bool:
    """Whether the run finished and every output it recorded is still there, as written (a stat per file)."""
    return bool(manifest.outputs) and output_fingerprints(run_dir) == manifest.outputs


def build_local_dataset(ctx: RunContext) -> None:
    """The accepted dialogues as a Hugging Face dataset directory under the run dir, all or nothing: built beside
    `dataset/`, then swapped in, so a killed rebuild never leaves a card over missing shards."""
    from speakrl.pipeline.stages import publish

    build_dir_atomically(ctx.dir / "dataset", lambda staging: publish.build_dataset_dir(ctx.dir, staging))


def load_config(path: str | None, overrides: dict[str, Any]) -> RunConfig:
    """A RunConfig from a YAML file and CLI overrides; any problem is one ConfigError sentence."""
    from pydantic import ValidationError

    data: dict[str, Any] = {}
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path!r} does not exist") from None
        except IsADirectoryError:
            raise ConfigError(f"config file {path!r} is a directory; pass a YAML file") from None
        except PermissionError:
            raise ConfigError(f"config file {path!r} cannot be read (permission denied); fix its permissions") from None
        except UnicodeDecodeError:
            raise ConfigError(f"config file {path!r} is not UTF-8 text; save it as UTF-8 YAML") from None
        except OSError as e:
            raise ConfigError(f"config file {path!r} cannot be read ({e.strerror})") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"config file {path!r} is not valid YAML{where}; fix the syntax") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path!r} must be a mapping of settings, not a {type(loaded).__name__}")
        data = loaded or {}
    for key, value in overrides.items():
        if value is None:
            continue
        target = data
        *parents, leaf = key.split(".")
        for p in parents:
            target = target.setdefault(p, {})
            if not isinstance(target, dict):
                raise ConfigError(f"setting {p!r} must be a mapping of settings, not {target!r}; fix the config file")
        target[leaf] = value
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "config"
        if err["type"] == "extra_forbidden":
            valid = ", ".join(sorted(_config_keys(err["loc"])))
            raise ConfigError(f"unknown setting {where!r}; valid settings here: {valid}") from None
        raise ConfigError(f"invalid setting {where!r}: {err['msg'].removeprefix('Value error, ')}") from None


def _config_keys(loc: tuple) -> list[str]:
    model: Any = RunConfig
    for part in loc[:-1]:
        field = model.model_fields.get(part) or next((f for f in model.model_fields.values() if f.alias == part), None)
        if field is None or not hasattr(field.annotation, "model_fields"):
            break
        model = field.annotation
    return [f.alias or name for name, f in model.model_fields.items()]
