"""How well a whole `speakrl run --backend openai` keeps a fast endpoint busy, in one process or several.

A local OpenAI-compatible server (its own process, a fixed latency L, answering paraphrase requests
validly) serves a paraphrase-mode run of N scenarios at concurrency C. A paraphrase run sends one request
per scenario, so the ideal time of the generate stage (scenarios, offline drafts, LLM, validation) is
N·L/C; the run also renders prompts, checks answers, drafts and validates rows on this machine's cores.
The server reports the time-integral of requests in flight, so the share of the C slots in use is measured,
not inferred.

    python benchmarks/llm_run.py                          # N=4000, L=0.5 s, C=64 and 256, workers 1 and 2, 3 repeats
    python benchmarks/llm_run.py --n 1000 --repeats 1

Prints one JSON document: per concurrency and worker count, medians of the generate stage's seconds (from the run's
manifest), its ratio to the ideal, the slot utilization, the whole command's wall time, when the first request arrived
after the command started and the span from the first request to the last response over the ideal; and, measured just
before each run on the same server (so a busy machine slows both alike), the bare-aiohttp floor for the same
number of requests at the same C, and the run's ratio to it.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # speakrl_testing: the local test servers
sys.path.insert(0, str(Path(__file__).resolve().parent))

from llm_throughput import floor_run  # noqa: E402
from speakrl_testing.openai_server import spawn_server, spawned_server_stats  # noqa: E402


def one_run(base_url: str, n: int, c: int, workers: int, shard_size: int, latency: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(json.dumps({"endpoint": {"base_url": base_url, "model": "bench-model", "max_concurrency": c}}))
        cmd = [sys.executable, "-m", "speakrl", "run", "-c", str(config), "--n", str(n), "--out", f"{tmp}/run",
               "--backend", "openai", "--mode", "paraphrase", "--workers", str(workers), "--shard-size", str(shard_size)]
        before = spawned_server_stats(base_url, reset_span=True)
        t0, started = time.perf_counter(), time.time()
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            raise RuntimeError(f"speakrl run failed: {done.stdout[-500:]} {done.stderr[-500:]}")
        after = spawned_server_stats(base_url)
        manifest = json.loads((Path(tmp) / "run" / "manifest.json").read_text())
        stats = json.loads((Path(tmp) / "run" / "stats.json").read_text())
    generate = manifest["stages"]["generate"]["seconds"]
    requests = after["requests"] - before["requests"]
    busy = after["in_flight_seconds"] - before["in_flight_seconds"]
    return {
        "generate_s": generate,
        "wall_s": wall,
        "requests": requests,
        "accepted": stats["accepted"],
        "ideal_s": requests * latency / c,
        "slot_utilization": busy / (c * generate),
        # Where the time over the ideal goes: before the first request (process start, imports, the first rows'
        # scenarios and prompts), and between the first request and the last response
        "first_request_s": after["span_first_request"] - started,
        "requests_span_s": after["span_last_response"] - after["span_first_request"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = []
    with spawn_server(latency=args.latency, replay=True) as url:
        for concurrency, workers in ((c, w) for c in args.concurrency for w in args.workers):
            runs = []
            for repeat in range(args.repeats):
                floor = floor_run(url, args.n, concurrency, f"floor-{concurrency}-{workers}-{repeat}")["wall_s"]
                run = one_run(url, args.n, concurrency, workers, args.shard_size, args.latency)
                runs.append({**run, "floor_s": floor, "vs_floor": run["generate_s"] / floor})
            median = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
            results.append({
                "concurrency": concurrency,
                "workers": workers,
                "requests": runs[-1]["requests"],
                "accepted": runs[-1]["accepted"],
                "ideal_s": round(runs[-1]["ideal_s"], 3),
                "generate_s_median": round(median("generate_s"), 3),
                "ratio": round(median("generate_s") / runs[-1]["ideal_s"], 3),
                "ratio_runs": [round(r["generate_s"] / r["ideal_s"], 3) for r in runs],
                "floor_ratio_median": round(median("floor_s") / runs[-1]["ideal_s"], 3),
                "generate_vs_floor_median": round(median("vs_floor"), 3),
                "slot_utilization_median": round(median("slot_utilization"), 3),
                "first_request_after_command_start_s_median": round(median("first_request_s"), 3),
                "requests_span_vs_ideal_median": round(median("requests_span_s") / runs[-1]["ideal_s"], 3),
                "command_wall_s_median": round(median("wall_s"), 3),
            })
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(json.dumps({
        "benchmark": "llm_run",
        "python": platform.python_version(),
        "n": args.n, "latency_s": args.latency, "shard_size": args.shard_size,
        "repeats": args.repeats, "mode": "paraphrase",
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
