"""Do published rows render through every chat template TRL bundles, as they are loaded?

Each row of the `default` config (`messages` + `tools`) and of `decision_points` (`prompt` + `tools`, plus
`completion` when the config has one) is loaded with `datasets.load_dataset` and passed unchanged to every
`trl/chat_templates/*.jinja` and to the tiny tokenizer's template (`speakrl.training.tiny`), with the special
tokens a tokenizer passes. Per template it counts

- `failed`: rows the template raises on (first error kept in `error`);
- `double_encoded`: rendered rows in which a tool call's arguments appear as an escaped JSON string
  (`{\\"key\\": ...}`) instead of a JSON object, i.e. the template `tojson`-ed a string;
- `clarify_reasoning_dropped`: `default` rows with a clarification whose `reasoning_content` is missing from the
  rendered text (Qwen3-style templates keep reasoning only after the last user message);
- `argument_shapes`: which tool-call argument shapes ("object", "string") the template renders a minimal
  hand-written tool conversation with; none: it does not take text tool conversations at all (vision templates want
  content parts; some have no system or tool role).

    python benchmarks/chat_templates.py                       # generates a 200-scenario offline run (seed 0) first
    python benchmarks/chat_templates.py --dataset outputs/demo/dataset

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # speakrl_testing

from speakrl_testing.chat_templates import argument_shapes, measure, published_conversations, templates  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", help="a published dataset directory; default: generate an offline run")
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    import datasets

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.dataset
        if dataset is None:
            from speakrl.pipeline.runner import generate
            from speakrl.schemas import RunConfig

            dataset = str(Path(generate(RunConfig(n=args.n, seed=0, out=f"{tmp}/run"))) / "dataset")
        rows = published_conversations(dataset, cache_dir=f"{tmp}/cache")
        per_template = {name: {**measure(rows, t), "argument_shapes": argument_shapes(t)} for name, t in templates().items()}
    supported = {k: v for k, v in per_template.items() if v["argument_shapes"]}
    summary = {
        "rows": len(rows),
        "templates": len(per_template),
        "templates_without_text_tool_conversations": sorted(set(per_template) - set(supported)),
        "templates_needing_string_arguments": sorted(k for k, v in supported.items() if v["argument_shapes"] == ["string"]),
        "templates_needing_object_arguments": sorted(k for k, v in supported.items() if v["argument_shapes"] == ["object"]),
        "tool_templates_failing_some_row": sorted(k for k, v in supported.items() if v["failed"]),
        "failing_rows_in_tool_templates": sum(v["failed"] for v in supported.values()),
        "templates_failing_some_row": sorted(k for k, v in per_template.items() if v["failed"]),
        "templates_double_encoding": sorted(k for k, v in per_template.items() if v["double_encoded"]),
        "templates_dropping_clarify_reasoning": sorted(k for k, v in per_template.items() if v["clarify_reasoning_dropped"]),
    }
    json.dump({"summary": summary, "per_template": per_template}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
