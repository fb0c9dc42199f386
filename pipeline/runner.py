"""The runner: stages over shards of the run, with resume.

The run is cut into shards of `shard_size` scenario indices. Each stage writes one file per shard,
atomically, so a killed run resumes at the first shard whose file is missing and never redoes a finished
one; and since every scenario is a pure function of (seed, index), the resumed run produces exactly the
rows an uninterrupted one would. Deduplication is a single ordered pass at the end, so it too is independent
of where the run was interrupted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import multiprocessing.util
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from speakrl.pipeline.catalog import load_catalog
from speakrl.pipeline.catalog.sim import Simulator
from speakrl.pipeline.errors import ConfigError, RunDirError
from speakrl.pipeline.io import atomic_write_text, dump_row, read_jsonl, write_jsonl
from speakrl.pipeline.stages import dialogues as dialogues_stage
from speakrl.pipeline.stages import scenarios as scenarios_stage
from speakrl.pipeline.stages import validate as validate_stage
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
    catalog: Catalog
    sim: Simulator
    versions: dict[str, str]

    def shards(self) -> list[tuple[int, range]]:
        size = self.cfg.shard_size
        return [(k, range(start, min(start + size, self.cfg.n))) for k, start in enumerate(range(0, self.cfg.n, size))]

    def path(self, stage: str, k: int, kind: str = "shard") -> Path:
        return self.dir / stage / f"{kind}-{k:05d}.jsonl"


def open_run(cfg: RunConfig) -> RunContext:
    """Create or reopen the run directory; refuse to mix a different config into an existing run."""
    catalog = load_catalog(cfg.catalog, cfg.slot_values)  # first: a bad catalog leaves no run dir behind
    run_dir = Path(cfg.out)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise RunDirError(f"cannot write to output directory {str(run_dir)!r} ({e.strerror}); choose another --out") from None
    manifest_path = run_dir / "manifest.json"
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if old.get("config_hash") != config_hash(cfg):
            raise RunDirError(f"{str(run_dir)!r} holds a run made with different settings; use a new --out or delete it")
    ctx = RunContext(cfg, run_dir, catalog, Simulator(catalog), versions())
    config_text = yaml.safe_dump(cfg.model_dump(mode="json", by_alias=True), sort_keys=False)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file() or config_path.read_text(encoding="utf-8") != config_text:  # a re-run rewrites nothing
        atomic_write_text(config_path, config_text)
    if not manifest_path.exists():
        write_manifest(ctx, Manifest(speakrl_version=ctx.versions["speakrl"], created=_now(), seed=cfg.seed, n=cfg.n,
                                     config_hash=config_hash(cfg), versions=ctx.versions))
    return ctx


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_manifest(ctx: RunContext) -> Manifest:
    return Manifest.model_validate_json((ctx.dir / "manifest.json").read_text())


def write_manifest(ctx: RunContext, manifest: Manifest) -> None:
    atomic_write_text(ctx.dir / "manifest.json", manifest.model_dump_json(indent=2))


# --- per-shard work (runs in worker processes) ----------------------------------------------------------------

_WORKER: RunContext | None = None
_WORKER_LLM: Any = None  # the worker's share of the endpoint, in LLM runs


def _init_worker(cfg: RunConfig, shared_llm: Any = None) -> None:
    global _WORKER, _WORKER_LLM
    catalog = load_catalog(cfg.catalog, cfg.slot_values)
    _WORKER = RunContext(cfg, Path(cfg.out), catalog, Simulator(catalog), versions())
    if shared_llm is not None:
        from speakrl.pipeline.llm import LLM

        _WORKER_LLM = LLM.from_config(cfg, Path(cfg.out) / "cache", shared=shared_llm)
        # Workers end without running atexit hooks; this closes the HTTP client and the cache cleanly.
        multiprocessing.util.Finalize(_WORKER_LLM, _WORKER_LLM.close, exitpriority=10)


def _scenarios_for(ctx: RunContext, k: int, indices: range) -> list[Scenario]:
    path = ctx.path("scenarios", k)
    if path.exists():
        return list(read_jsonl(path, Scenario))
    rows = list(scenarios_stage.run(ctx.cfg, ctx.catalog, indices, ctx.sim))
    write_jsonl(path, rows)
    return rows


def _dialogues_for(ctx: RunContext, k: int, indices: range, llm: Any = None) -> tuple[list[Dialogue], list[Rejection]]:
    path, rejected_path = ctx.path("dialogues", k), ctx.path("dialogues", k, "rejected")
    if path.exists():
        rejected = list(read_jsonl(rejected_path, Rejection)) if rejected_path.exists() else []
        return list(read_jsonl(path, Dialogue)), rejected
    scenarios = _scenarios_for(ctx, k, indices)
    drafts = list(dialogues_stage.run(ctx.cfg, ctx.catalog, scenarios, ctx.sim, ctx.versions))
    rejected: list[Rejection] = []
    if llm is not None:
        from speakrl.pipeline.stages import llm_dialogues

        if ctx.cfg.dialogues.backend == "openai":
            rows = llm_dialogues.run(ctx.cfg, scenarios, drafts, llm, ctx.sim, ctx.catalog)
        else:  # offline dialogues, judged by the LLM (validate.judge)
            rows = llm_dialogues.judge(ctx.cfg, drafts, llm)
        drafts = [r for r in rows if isinstance(r, Dialogue)]
        rejected = [r for r in rows if isinstance(r, Rejection)]
    write_jsonl(rejected_path, rejected)  # first: the shard file marks the shard done
    write_jsonl(path, drafts)
    return drafts, rejected


def _validated_for(ctx: RunContext, k: int, indices: range, llm: Any = None) -> tuple[int, int]:
    path, rejected_path = ctx.path("validated", k), ctx.path("validated", k, "rejected")
    if not path.exists():
        rows, _ = _dialogues_for(ctx, k, indices, llm)
        out = list(validate_stage.run(rows, validate_stage.Context.build(ctx.catalog, ctx.sim)))
        write_jsonl(rejected_path, [r for r in out if isinstance(r, Rejection)])
        write_jsonl(path, [r for r in out if isinstance(r, Dialogue)])
    return k, len(indices)


def _run_shard(ctx: RunContext, stage: str, k: int, indices: range, llm: Any = None) -> None:
    if stage == "scenarios":
        _scenarios_for(ctx, k, indices)
    elif stage == "dialogues":
        _dialogues_for(ctx, k, indices, llm)
    else:
        _validated_for(ctx, k, indices, llm)


def _shard_job(stage: str, k: int, start: int, stop: int) -> tuple[int, int, Any]:
    assert _WORKER is not None
    _run_shard(_WORKER, stage, k, range(start, stop), _WORKER_LLM)
    usage = (_WORKER_LLM.index, _WORKER_LLM.usage_summary()) if _WORKER_LLM is not None else None
    return k, stop - start, usage


def run_shards(ctx: RunContext, stage: str, progress: Progress | None = None, llm: Any = None) -> None:
    """Run `stage` (and whatever it needs before it) on every shard whose output is missing.

    Shards run in `workers` processes. In LLM runs each process gets its share of the endpoint's limits
    (they add up to the limits) and they spend from one cost limit: one core cannot keep up with the SDK's
    per-request work at high concurrency, nor with prompt rendering and checks besides.
    """
    out_dir = {"scenarios": "scenarios", "dialogues": "dialogues", "validate": "validated"}[stage]
    todo = [(k, r) for k, r in ctx.shards() if not ctx.path(out_dir, k).exists()]
    done_rows = sum(len(r) for k, r in ctx.shards()) - sum(len(r) for _, r in todo)
    if progress and done_rows:
        progress(stage, done_rows)
    workers = min(ctx.cfg.workers or os.cpu_count() or 1, len(todo))
    if llm is not None:
        from speakrl.pipeline.llm import max_processes

        workers = min(workers, max_processes(llm.endpoint))
    if workers <= 1:
        for k, r in todo:
            _run_shard(ctx, stage, k, r, llm)
            if progress:
                progress(stage, len(r))
        return
    pool_args: dict[str, Any] = {"initializer": _init_worker, "initargs": (ctx.cfg,)}
    if llm is not None:
        # A fresh interpreter per worker: forking a process whose threads (the LLM's loop, the progress
        # display) may hold locks can deadlock the child.
        pool_args = {"initializer": _init_worker, "initargs": (ctx.cfg, llm.share(workers)),
                     "mp_context": multiprocessing.get_context("spawn")}
    with ProcessPoolExecutor(max_workers=workers, **pool_args) as pool:
        futures = {pool.submit(_shard_job, stage, k, r.start, r.stop): k for k, r in todo}
        failures: dict[int, BaseException] = {}
        for future in as_completed(futures):
            try:
                _, rows, usage = future.result()
            except CancelledError:
                continue
            except BaseException as e:  # noqa: BLE001 - re-raised below, once the running shards are done
                failures[futures[future]] = e
                for other in futures:  # start no new shard; the running ones finish and are kept
                    other.cancel()
                continue
            if usage is not None:
                llm.record_worker_usage(*usage)
            if progress:
                progress(stage, rows)
        if failures:
            first = failures[min(failures)]  # the first shard's failure, whatever the timing
            if isinstance(first, BrokenProcessPool):  # killed (out of memory, a signal): no exception to show
                raise RunDirError(f"a worker process died while running the {stage} stage; finished shards are "
                                  "kept, so running the same command again resumes (fewer --workers uses less memory)")
            raise first


# --- the final, ordered pass ----------------------------------------------------------------------------------


def finalize(ctx: RunContext) -> dict[str, Any]:
    """Deduplicate the validated shards in run order, write accepted.jsonl, rejected.jsonl and stats.json."""
    cfg = ctx.cfg
    dedup = validate_stage.Deduplicator(cfg.validate_.near_duplicate_threshold, cfg.validate_.num_perm)
    tally = Tally()
    rejected_counts: Counter[str] = Counter()
    accepted_tmp = ctx.dir / ".accepted.jsonl.tmp"
    rejected_tmp = ctx.dir / ".rejected.jsonl.tmp"
    with open(accepted_tmp, "w", encoding="utf-8") as acc, open(rejected_tmp, "w", encoding="utf-8") as rej:
        for k, _ in ctx.shards():
            for stage_dir in ("dialogues", "validated"):
                path = ctx.path(stage_dir, k, "rejected")
                if path.exists():
                    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
                        rejected_counts[json.loads(line)["check"]] += 1
                        rej.write(line)
            # Rows stay JSON here: they were validated when written, and re-parsing them costs more than the dedup.
            # An accepted row is copied as the line it was read from, not serialized again.
            lines = ctx.path("validated", k).read_text(encoding="utf-8").splitlines(keepends=True)
            rows = (json.loads(line) for line in lines)
            for line, out in zip(lines, validate_stage.deduplicate(rows, dedup)):  # one output per row, in order
                if isinstance(out, Rejection):
                    rejected_counts[out.check] += 1
                    rej.write(dump_row(out) + "\n")
                else:
                    acc.write(line)
                    tally.add(summary_record(out))
    os.replace(accepted_tmp, ctx.dir / "accepted.jsonl")
    os.replace(rejected_tmp, ctx.dir / "rejected.jsonl")
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


def compute_stats(records: Iterable[dict[str, Any]], rejected: Counter[str], generated: int) -> dict[str, Any]:
    """Counts by domain, tool, ambiguity type, turns and rejection reason."""
    tally = Tally()
    for record in records:
        tally.add(record)
    return tally.stats(rejected, generated)


def generate(cfg: RunConfig, progress: Progress | None = None, llm: Any = None, ctx: RunContext | None = None) -> Path:
    """Run every stage (resuming whatever is already done) and return the run directory."""
    ctx = ctx or open_run(cfg)
    manifest = read_manifest(ctx)
    if outputs_unchanged(ctx.dir, manifest):
        logger.info("%s is a finished run with its outputs unchanged; nothing to do", ctx.dir)
        return ctx.dir
    previous_usage = manifest.stages["generate"].usage if "generate" in manifest.stages else {}
    t0 = time.perf_counter()
    run_shards(ctx, "validate", progress, llm)
    t1 = time.perf_counter()
    stats = finalize(ctx)
    t2 = time.perf_counter()
    build_local_dataset(ctx)
    t3 = time.perf_counter()
    manifest.stages["generate"] = StageRecord(status="done", seconds=round(t1 - t0, 3))
    manifest.stages["finalize"] = StageRecord(status="done", seconds=round(t2 - t1, 3))
    manifest.stages["dataset"] = StageRecord(status="done", seconds=round(t3 - t2, 3))
    if llm is not None:
        from speakrl.pipeline.llm import merge_usage

        manifest.stages["generate"].usage = merge_usage(previous_usage, llm.usage_summary())
    manifest.counts = {k: v for k, v in stats.items() if isinstance(v, int)}
    consistent = stats["generated"] == stats["accepted"] + stats["rejected"]
    manifest.outputs = output_fingerprints(ctx.dir) if consistent else {}
    write_manifest(ctx, manifest)
    if not consistent:
        raise RunDirError(f"run {str(ctx.dir)!r} is inconsistent: {stats['generated']} generated but "
                          f"{stats['accepted']} accepted and {stats['rejected']} rejected; delete it and run again")
    return ctx.dir


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
    """The accepted dialogues as a Hugging Face dataset directory under the run dir."""
    from speakrl.pipeline.stages import publish

    publish.build_dataset_dir(ctx.dir, ctx.dir / "dataset")


def load_config(path: str | None, overrides: dict[str, Any]) -> RunConfig:
    """A RunConfig from a YAML file and CLI overrides; any problem is one ConfigError sentence."""
    from pydantic import ValidationError

    data: dict[str, Any] = {}
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path!r} does not exist") from None
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
        target[leaf] = value
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "config"
        if err["type"] == "extra_forbidden":
            valid = ", ".join(sorted(_config_keys(err["loc"])))
            raise ConfigError(f"unknown setting {where!r}; valid settings here: {valid}") from None
        raise ConfigError(f"invalid setting {where!r}: {err['msg']}") from None


def _config_keys(loc: tuple) -> list[str]:
    model: Any = RunConfig
    for part in loc[:-1]:
        field = model.model_fields.get(part) or next((f for f in model.model_fields.values() if f.alias == part), None)
        if field is None or not hasattr(field.annotation, "model_fields"):
            break
        model = field.annotation
    return [f.alias or name for name, f in model.model_fields.items()]
