"""What issue 13's reliability costs per operation: a usage-ledger line per paid request, and secret scrubbing of
every byte written. Prints JSON (medians of `--repeats`); run by hand: `python benchmarks/reliability_overhead.py`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from speakrl.pipeline import secrets
from speakrl.pipeline.io import atomic_write_bytes
from speakrl.pipeline.llm import UsageLedger


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--megabytes", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ledger = UsageLedger(Path(tmp) / "usage.jsonl")

        def record() -> None:
            for _ in range(args.lines):
                ledger.record("dialogues", "m", requests=1, prompt_tokens=812, completion_tokens=160, cost=0.0012)

        ledger_s = _median_seconds(record, args.repeats)
        totals_s = _median_seconds(ledger.totals, args.repeats)
        rows = (b'{"id":"d-1","messages":[{"role":"user","content":"book a table for four tonight"}]}\n' * 100_000)
        data = rows[: args.megabytes * 1_000_000]
        target = Path(tmp) / "shard.jsonl"
        plain_s = _median_seconds(lambda: atomic_write_bytes(target, data), args.repeats)
        secrets.register("sk-benchmark-0123456789abcdef")
        scrubbed_s = _median_seconds(lambda: atomic_write_bytes(target, data), args.repeats)
        scrub_s = _median_seconds(lambda: secrets.scrub_bytes(data), args.repeats)
    print(json.dumps({
        "ledger_record_us_per_request": round(ledger_s / args.lines * 1e6, 2),
        "ledger_totals_ms": round(totals_s * 1e3, 2),
        "ledger_lines": args.lines * args.repeats,
        "atomic_write_mb": args.megabytes,
        "atomic_write_ms_no_secret": round(plain_s * 1e3, 2),
        "atomic_write_ms_one_secret": round(scrubbed_s * 1e3, 2),
        "scrub_ms_per_write": round(scrub_s * 1e3, 2),
        "repeats": args.repeats,
    }, indent=1))


if __name__ == "__main__":
    main()
