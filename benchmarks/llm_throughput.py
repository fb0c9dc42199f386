"""Throughput of `pipeline.llm.LLM` against a local OpenAI-compatible server with a fixed latency.

N distinct requests (so none is a cache hit; the cache is on, in a temporary directory, as in a run) go
through the full client path (`LLM.complete`: cache lookup and write, rate/concurrency limits, tenacity,
the `openai` SDK on aiohttp) at concurrency C, from one process or split over P processes the way a run
splits them (`LLM.share`: each process takes its share of C, one cost limit). The server runs in its own
process, so the client's CPU time is measured alone. Ideal wall time is N·L/C.

A bare aiohttp client (no SDK, no cache, no retries) on the same server gives the floor: what the
server, the event loop and this machine allow, whatever the client does.

    python benchmarks/llm_throughput.py                       # N=2000, L=0.5 s, C in 16 64 256, P in 1 2, 3 repeats
    python benchmarks/llm_throughput.py --n 500 --repeats 1   # quick look

Prints one JSON document: per (C, P, share of 429 responses) the median wall time, ideal, ratio and client
CPU milliseconds per request over the repeats, and the floor per (C, share of 429 responses).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # speakrl_testing: the local test servers

from speakrl.pipeline.llm import LLM, SharedLLMState  # noqa: E402
from speakrl_testing.openai_server import spawn_server, spawned_server_stats  # noqa: E402
from speakrl.schemas.config import EndpointConfig, StageLLMConfig  # noqa: E402

PROMPT = "Rewrite this request so it sounds natural: I want a table for four tonight. " * 8


def messages(tag: str, i: int) -> list[dict]:
    return [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": f"{PROMPT} #{tag}-{i}"}]


def client_part(base_url: str, n: int, c: int, tag: str, cache_dir: str, shared: SharedLLMState | None, barrier) -> dict:
    """One process's part: warm up its connections, wait for the others, send its n requests."""
    endpoint = EndpointConfig(base_url=base_url, model="bench-model", max_concurrency=c, timeout=30.0, max_retries=8)
    sampling = StageLLMConfig(backend="openai", max_tokens=64)
    with LLM(endpoint, cache_dir, api_key="sk-bench", shared=shared) as llm:
        warm = [llm.complete(messages(f"warm-{tag}-{llm.index}", i), stage="bench", sampling=sampling)
                for i in range(llm.endpoint.max_concurrency)]
        llm.run_sync(llm.gather(warm))
        if barrier is not None:
            barrier.wait()
        coros = [llm.complete(messages(f"{tag}-{llm.index}", i), stage="bench", sampling=sampling) for i in range(n)]
        t0, c0 = time.monotonic(), time.process_time()  # monotonic: one clock for every process on Linux
        results = llm.run_sync(llm.gather(coros))
        t1, cpu = time.monotonic(), time.process_time() - c0
    return {"start": t0, "end": t1, "cpu_s": cpu, "errors": sum(isinstance(r, BaseException) for r in results)}


def _process_part(queue, *args) -> None:
    queue.put(client_part(*args))


def one_run(base_url: str, n: int, c: int, processes: int, tag: str) -> dict:
    before = spawned_server_stats(base_url)
    with tempfile.TemporaryDirectory() as cache_dir:
        if processes == 1:
            parts = [client_part(base_url, n, c, tag, cache_dir, None, None)]
        else:
            # One process per part (a pool could hand two parts to one process, which would then wait forever
            # at the barrier), started from a fresh interpreter as a run's workers are.
            context = multiprocessing.get_context("spawn")
            shared, barrier, queue = SharedLLMState(processes, context), context.Barrier(processes), context.Queue()
            sizes = [n // processes + (1 if i < n % processes else 0) for i in range(processes)]
            procs = [context.Process(target=_process_part, args=(queue, base_url, size, c, tag, cache_dir, shared, barrier))
                     for size in sizes]
            for proc in procs:
                proc.start()
            parts = [queue.get(timeout=600) for _ in procs]
            for proc in procs:
                proc.join()
    after = spawned_server_stats(base_url)
    statuses = {k: after["status_counts"].get(k, 0) - before["status_counts"].get(k, 0) for k in after["status_counts"]}
    return {
        "wall_s": max(p["end"] for p in parts) - min(p["start"] for p in parts),
        "cpu_ms_per_request": sum(p["cpu_s"] for p in parts) / n * 1000,
        "errors": sum(p["errors"] for p in parts),
        "status_counts": statuses,
        "server_cpu_ms_per_request": (after["cpu_seconds"] - before["cpu_seconds"]) / n * 1000,
    }


def floor_run(base_url: str, n: int, c: int, tag: str) -> dict:
    """The same requests from a bare aiohttp client: a semaphore, a session, and a retry on 429."""
    import aiohttp

    async def run() -> dict:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c + 16)) as session:
            sem = asyncio.Semaphore(c)

            async def one(i: int, tag: str) -> None:
                body = {"model": "bench-model", "messages": messages(tag, i), "max_tokens": 64}
                while True:
                    async with sem:
                        async with session.post(base_url + "/chat/completions", json=body) as r:
                            await r.read()
                            if r.status != 429:
                                return
                            wait = float(r.headers.get("retry-after-ms", 500)) / 1000
                    await asyncio.sleep(wait)

            await asyncio.gather(*[one(i, f"warm-{tag}") for i in range(c)])
            t0, c0 = time.monotonic(), time.process_time()
            await asyncio.gather(*[one(i, tag) for i in range(n)])
            return {"wall_s": time.monotonic() - t0, "cpu_ms_per_request": (time.process_time() - c0) / n * 1000}

    return asyncio.run(run())


def summary(runs: list[dict], ideal: float, **fields) -> dict:
    wall = statistics.median(r["wall_s"] for r in runs)
    return {
        **fields,
        "ideal_s": round(ideal, 3),
        "wall_s_median": round(wall, 3),
        "ratio": round(wall / ideal, 3),
        "ratio_runs": [round(r["wall_s"] / ideal, 3) for r in runs],
        "client_cpu_ms_per_request": round(statistics.median(r["cpu_ms_per_request"] for r in runs), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--retry-after", type=float, default=0.5, help="Retry-After seconds the server sends with 429")
    args = parser.parse_args()
    results, floors = [], []
    for rate_limit_every, share in ((0, 0.0), (10, 0.1)):
        with spawn_server(latency=args.latency, rate_limit_every=rate_limit_every, retry_after=args.retry_after) as url:
            for c in args.concurrency:
                ideal = args.n * args.latency / c
                floor = [floor_run(url, args.n, c, f"floor-{share}-{c}-{r}") for r in range(args.repeats)]
                floors.append(summary(floor, ideal, concurrency=c, share_429=share))
                print(json.dumps({"floor": floors[-1]}), file=sys.stderr, flush=True)
                for p in args.processes:
                    runs = [one_run(url, args.n, c, p, f"{share}-{c}-{p}-{r}") for r in range(args.repeats)]
                    results.append(summary(
                        runs, ideal, concurrency=c, processes=p, share_429=share,
                        server_cpu_ms_per_request=round(statistics.median(r["server_cpu_ms_per_request"] for r in runs), 3),
                        status_counts_last_run=runs[-1]["status_counts"], errors=sum(r["errors"] for r in runs),
                    ))
                    print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(json.dumps({
        "benchmark": "llm_throughput",
        "python": platform.python_version(),
        "n": args.n,
        "latency_s": args.latency,
        "repeats": args.repeats,
        "retry_after_s": args.retry_after,
        "results": results,
        "floor_bare_aiohttp": floors,
    }, indent=2))


if __name__ == "__main__":
    main()
