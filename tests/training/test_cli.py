"""`speakrl train` / `speakrl eval` bad input: one sentence on stderr, exit code 2, no traceback."""

import json
import subprocess
import sys

import pytest

from speakrl_testing.openai_server import OpenAIServer


def speakrl(*args, timeout=180):
    return subprocess.run([sys.executable, "-c", "from speakrl.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


def assert_one_sentence(proc, pattern):
    import re

    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith(("WARNING", "INFO"))]
    # One message (rich wraps it at the terminal width, so continuation lines are joined back).
    assert lines and lines[0].startswith("error:") and sum(line.startswith("error:") for line in lines) == 1, proc.stderr
    assert re.search(pattern, " ".join(" ".join(lines).split())), proc.stderr


def test_unknown_recipe(tmp_path, run_dir):
    proc = speakrl("train", "--recipe", "huge-tpu", "--dataset", str(run_dir), "--output-dir", str(tmp_path))
    assert_one_sentence(proc, r"unknown recipe 'huge-tpu'; valid recipes: multi-gpu, qwen3-1.7b, tiny-cpu")


def test_unknown_reward(tmp_path, run_dir):
    proc = speakrl("train", "--recipe", "tiny-cpu", "--dataset", str(run_dir), "--output-dir", str(tmp_path),
                   "--set", "reward_funcs=[format, vibes]", "--set", "reward_weights=null")
    assert_one_sentence(proc, r"unknown reward\(s\) vibes; valid rewards: format, clarify, question, tool_call")


def test_missing_model_path(tmp_path, run_dir):
    proc = speakrl("eval", "--model", str(tmp_path / "nope"), "--dataset", str(run_dir))
    assert_one_sentence(proc, r"model path .*nope.* does not exist")
    proc = speakrl("train", "--recipe", "tiny-cpu", "--dataset", str(run_dir), "--output-dir", str(tmp_path / "o"),
                   "--model", str(tmp_path / "missing"))
    assert_one_sentence(proc, r"model path .*missing.* does not exist")


def test_dataset_without_the_needed_columns(tmp_path):
    import datasets

    bad = tmp_path / "bad"
    datasets.Dataset.from_dict({"text": ["hello", "world"]}).to_parquet(str(bad / "data" / "train-00000-of-00001.parquet"))
    proc = speakrl("train", "--recipe", "tiny-cpu", "--dataset", str(bad), "--output-dir", str(tmp_path / "o"))
    assert_one_sentence(proc, r"has no column\(s\) messages, tools, turn_labels")
    proc = speakrl("train", "--recipe", "tiny-cpu", "--dataset", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "o"))
    assert_one_sentence(proc, r"neither a run directory, a dataset directory nor a Hub dataset id")


@pytest.mark.slow
def test_train_and_eval_commands(tmp_path, run_dir):
    out = tmp_path / "tiny"
    proc = speakrl("train", "--recipe", "tiny-cpu", "--dataset", str(run_dir), "--output-dir", str(out), "--max-steps", "1",
                   "--set", "pretrain.max_steps=1", "--set", "sft.max_steps=1", "--set", "report_to=none", "--set", "max_train_samples=16",
                   "--set", "per_device_train_batch_size=4", "--set", "num_generations=2", "--set", "max_completion_length=16",
                   "--set", "tiny_model={vocab_size: 512, hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64}",
                   timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "reward_curve.png").is_file()
    proc = speakrl("eval", "--model", str(out / "grpo"), "--dataset", str(run_dir), "--split", "test", "--limit", "3",
                   "--max-turns", "2", "--max-new-tokens", "8", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "task completion" in proc.stdout
    assert (out / "grpo" / "eval_test.json").is_file()


def test_unknown_benchmark(tmp_path):
    proc = speakrl("eval", "--model", "m", "--base-url", "http://127.0.0.1:9/v1", "--benchmark", "nope")
    assert_one_sentence(proc, "unknown benchmark 'nope'; valid: when2call")
    proc = speakrl("eval", "--model", "m", "--base-url", "http://127.0.0.1:9/v1")
    assert_one_sentence(proc, "pass either --dataset .* or --benchmark")


def test_eval_benchmark_command_on_a_checkpoint_and_an_endpoint(tiny_dir, slice_dir, tmp_path):
    proc = speakrl("eval", "--benchmark", "when2call", "--benchmark-dir", str(slice_dir), "--model", str(tiny_dir),
                   "--max-new-tokens", "8", "--output-dir", str(tmp_path / "local"), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = " ".join(proc.stdout.split())  # rich wraps cells at the terminal width
    for column in ("always-act", "always-ask", "oracle", "macro-F1", "hallucination"):
        assert column in text, proc.stdout
    local = json.loads((tmp_path / "local" / "eval_when2call.json").read_text())
    assert local["items"] == 12 and local["baselines"]["oracle"]["macro_f1"] == 1.0

    def asker(body):  # asks on every item: all request_for_info
        return "Which value do you mean?"

    with OpenAIServer(responder=asker) as server:
        proc = speakrl("eval", "--benchmark", "when2call", "--benchmark-dir", str(slice_dir), "--model", "asker",
                       "--base-url", server.base_url, "--output-dir", str(tmp_path / "api"), timeout=600)
        assert server.requests == 12 and server.bodies[0]["tools"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    api = json.loads((tmp_path / "api" / "eval_when2call.json").read_text())
    assert api["f1_request_for_info"] == 0.5 and api["tool_hallucination_rate"] == 0.0
    assert api["macro_f1"] == pytest.approx(1 / 6, abs=1e-3)


def test_eval_miss_param_command_on_a_checkpoint_and_an_endpoint(tiny_dir, slice_dir, tmp_path):
    """`--benchmark bfcl-miss-param` through the CLI: the baselines score what they must beside the model, and an
    endpoint that always asks waits on every `[]` turn and acts on none."""
    from speakrl.training.benchmarks import load_benchmark

    items = load_benchmark("bfcl-miss-param", slice_dir, limit=16)  # the first tasks' turns: both kinds, a short run
    wait = sum(i["gold"] != "tool_call" for i in items)
    assert 0 < wait < len(items)
    proc = speakrl("eval", "--benchmark", "bfcl-miss-param", "--benchmark-dir", str(slice_dir), "--model", str(tiny_dir),
                   "--limit", "16", "--max-new-tokens", "8", "--output-dir", str(tmp_path / "local"), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = " ".join(proc.stdout.split())
    for row in ("always-act", "oracle", "must-wait turns", "must-act turns", "call exact match"):
        assert row in text, proc.stdout
    local = json.loads((tmp_path / "local" / "eval_bfcl-miss-param.json").read_text())
    assert local["items"] == len(items)
    oracle, act = local["baselines"]["oracle"], local["baselines"]["always-act"]
    assert oracle["accuracy"] == 1.0 and oracle["call_exact_match"] == 1.0
    assert act["wait_accuracy"] == 0.0 and act["act_accuracy"] == 1.0

    with OpenAIServer(responder=lambda body: "Which file do you mean?") as server:
        proc = speakrl("eval", "--benchmark", "bfcl-miss-param", "--benchmark-dir", str(slice_dir), "--model", "asker",
                       "--base-url", server.base_url, "--limit", "16", "--output-dir", str(tmp_path / "api"), timeout=600)
        assert server.requests == len(items) and server.bodies[0]["tools"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    api = json.loads((tmp_path / "api" / "eval_bfcl-miss-param.json").read_text())
    assert api["wait_accuracy"] == 1.0 and api["act_accuracy"] == 0.0 and api["call_rate"] == 0.0
    assert api["accuracy"] == round(wait / len(items), 4)
