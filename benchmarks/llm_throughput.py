"""Throughput of `pipeline.llm.LLM` against a local OpenAI-compatible server with a fixed latency.

N distinct requests (so none is a cache hit; the cache is on, in a temporary directory, as in a run) go
through the full client path (`LLM.complete`: cache lookup and write, rate/concurrency limits, tenacity,
the `openai` SDK on aiohttp) at concurrency C. The server runs in its own process, so the client's CPU
time is measured alone. Ideal wall time is N·L/C.

    python benchmarks/llm_throughput.py                       # N=2000, L=0.5 s, C in 16 64 256, 3 repeats
    python benchmarks/llm_throughput.py --n 500 --repeats 1   # quick look

Prints one JSON document: per (C, share of 429 responses) the median wall time, ideal, ratio and client
CPU milliseconds per request over the repeats.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.llm import LLM  # noqa: E402
from pipeline.testing.openai_server import spawn_server  # noqa: E402
from schemas.config import EndpointConfig, StageLLMConfig  # noqa: E402




def server_stats(base_url: str) -> dict:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats") as r:
        return json.load(r)


def one_run(base_url: str, n: int, c: int, latency: float, tag: str) -> dict:
    endpoint = EndpointConfig(base_url=base_url, model="bench-model", max_concurrency=c, timeout=30.0, max_retries=8)
    sampling = StageLLMConfig(backend="openai", max_tokens=64)
    with tempfile.TemporaryDirectory() as cache_dir:
        llm = LLM(endpoint, cache_dir, api_key="sk-bench")
        try:
            # Warm up the connection pool (and the server), as a long run would be.
            warm = [llm.complete([{"role": "user", "content": f"warm {tag} {i}"}], stage="bench", sampling=sampling) for i in range(c)]
            llm.run_sync(llm.gather(warm))
            before = server_stats(base_url)
            prompt = "Rewrite this request so it sounds natural: I want a table for four tonight. " * 8
            system = {"role": "system", "content": "You are helpful."}
            coros = [
                llm.complete([system, {"role": "user", "content": f"{prompt} #{tag}-{i}"}], stage="bench", sampling=sampling)
                for i in range(n)
            ]
            t0, c0 = time.perf_counter(), time.process_time()
            results = llm.run_sync(llm.gather(coros))
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            after = server_stats(base_url)
        finally:
            llm.close()
    errors = [r for r in results if isinstance(r, BaseException)]
    statuses = {k: after["status_counts"].get(k, 0) - before["status_counts"].get(k, 0) for k in after["status_counts"]}
    return {
        "wall_s": wall,
        "cpu_ms_per_request": cpu / n * 1000,
        "errors": len(errors),
        "http_requests": after["requests"] - before["requests"],
        "status_counts": statuses,
        "server_cpu_ms_per_request": (after["cpu_seconds"] - before["cpu_seconds"]) / n * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--retry-after", type=float, default=0.5, help="Retry-After seconds the server sends with 429")
    args = parser.parse_args()
    results = []
    for rate_limit_every, share in ((0, 0.0), (10, 0.1)):
        with spawn_server(latency=args.latency, rate_limit_every=rate_limit_every, retry_after=args.retry_after) as url:
            for c in args.concurrency:
                runs = [one_run(url, args.n, c, args.latency, f"{share}-{c}-{r}") for r in range(args.repeats)]
                ideal = args.n * args.latency / c
                wall = statistics.median(r["wall_s"] for r in runs)
                results.append(
                    {
                        "concurrency": c,
                        "share_429": share,
                        "n": args.n,
                        "latency_s": args.latency,
                        "repeats": args.repeats,
                        "ideal_s": round(ideal, 3),
                        "wall_s_median": round(wall, 3),
                        "ratio": round(wall / ideal, 3),
                        "ratio_runs": [round(r["wall_s"] / ideal, 3) for r in runs],
                        "client_cpu_ms_per_request": round(statistics.median(r["cpu_ms_per_request"] for r in runs), 3),
                        "server_cpu_ms_per_request": round(statistics.median(r["server_cpu_ms_per_request"] for r in runs), 3),
                        "http_requests_per_run": runs[-1]["http_requests"],
                        "status_counts_last_run": runs[-1]["status_counts"],
                        "errors": sum(r["errors"] for r in runs),
                    }
                )
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(
        json.dumps(
            {
                "benchmark": "llm_throughput",
                "python": platform.python_version(),
                "retry_after_s": args.retry_after,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
