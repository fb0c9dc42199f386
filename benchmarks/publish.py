"""Cost of publishing: `build_dataset_dir` (the call at the end of `speakrl run`) and a push to a local Hub.

For each N an offline run is generated (not timed), then timed: the leak-free split (groups over scenario, goal and
MinHash near-duplicates), the whole local build (parquet + card + figure), a push through the real
`huggingface_hub` client to the in-process test Hub, a re-push of the same run (the no-op path), and
`datasets.load_dataset` of the three configs back through that endpoint.

    python benchmarks/publish.py                 # N in 1000 5000
    python benchmarks/publish.py --n 200 2000

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # speakrl_testing: the local test servers

from speakrl.pipeline.io import read_jsonl  # noqa: E402
from speakrl.pipeline.runner import generate  # noqa: E402
from speakrl.pipeline.stages.publish import PublishOptions, assign_splits, build_dataset_dir, leakage_groups  # noqa: E402
from speakrl.schemas import RunConfig  # noqa: E402
from speakrl.schemas.dialogue import Dialogue  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - start, 3)


def bench(n: int, root: Path) -> dict:
    import datasets

    from speakrl.pipeline.hub import push
    from speakrl_testing.hub_server import HubServer, hub_environment

    run = generate(RunConfig(n=n, seed=0, out=str(root / f"run{n}")))
    rows = list(read_jsonl(run / "accepted.jsonl", Dialogue))
    groups, t_groups = timed(lambda: leakage_groups(rows, 0.9))
    _, t_split = timed(lambda: assign_splits(rows, PublishOptions(), seed=0, threshold=0.9))
    out, t_build = timed(lambda: build_dataset_dir(run, root / f"ds{n}"))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    with HubServer() as hub, hub_environment(hub, root):
        first, t_push = timed(lambda: push(run, f"bench/SpeakER-{n}"))
        again, t_repush = timed(lambda: push(run, f"bench/SpeakER-{n}"))
        _, t_load = timed(lambda: [datasets.load_dataset(f"bench/SpeakER-{n}", c, cache_dir=str(root / f"cache{n}"))
                                   for c in ("default", "decision_points")])
    return {
        "n_scenarios": n,
        "accepted": len(rows),
        "groups": len(groups),
        "largest_group": max(len(g) for g in groups),
        "seconds_groups": t_groups,
        "seconds_split_with_leakage_check": t_split,
        "seconds_build_dataset_dir": t_build,
        "dataset_bytes": size,
        "seconds_push": t_push,
        "seconds_repush_noop": t_repush,
        "repush_changed": again.changed,
        "seconds_load_two_configs": t_load,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 5000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [bench(n, Path(tmp)) for n in args.n]
    print(json.dumps({"machine": platform.processor() or platform.machine(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
