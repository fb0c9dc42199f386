"""SpeakER-SGD (`speakrl import sgd`) goes through `speakrl train --recipe tiny-cpu` and `speakrl eval` like any run."""

import json
import subprocess
import sys
from pathlib import Path

SLICE = Path(__file__).resolve().parents[2] / "data" / "sgd" / "dialogues" / "train"


def speakrl(*args, timeout=600):
    return subprocess.run([sys.executable, "-c", "from speakrl.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_train_and_eval_on_sgd_rows(tmp_path):
    run = tmp_path / "sgd"
    proc = speakrl("import", "sgd", str(SLICE), "--out", str(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "tiny"
    proc = speakrl("train", "--recipe", "tiny-cpu", "--dataset", str(run), "--output-dir", str(out), "--max-steps", "2",
                   "--set", "sft.max_steps=1", "--set", "report_to=none", "--set", "max_train_samples=16",
                   "--set", "per_device_train_batch_size=4", "--set", "num_generations=2", "--set", "max_completion_length=16",
                   "--set", "tiny_model={vocab_size: 512, hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    history = json.loads((out / "grpo" / "log_history.json").read_text())
    assert len([h for h in history if "reward" in h]) == 2
    proc = speakrl("eval", "--model", str(out / "grpo"), "--dataset", str(run), "--split", "train", "--limit", "2",
                   "--max-turns", "2", "--max-new-tokens", "8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "task completion" in proc.stdout
