"""SpeakER-SGD goes through TRL, `speakrl train --recipe tiny-cpu` and `speakrl eval` like any config: imported with
`speakrl import sgd`, published as the `sgd` config beside SpeakER's (`speakrl publish RUN --sgd SGD_RUN`), read
with `--config sgd`."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "data" / "sgd"
SLICE = DATA / "dialogues" / "train"


def speakrl(*args, timeout=600):
    return subprocess.run([sys.executable, "-c", "from speakrl.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    from speakrl_testing.runs import make_run

    root = tmp_path_factory.mktemp("sgd_config")
    proc = speakrl("import", "sgd", str(SLICE), "--out", str(root / "sgd"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = make_run(root / "run")
    proc = speakrl("publish", str(run), "--sgd", str(root / "sgd"), "--to-dir", str(root / "ds"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "ds"


def test_train_and_eval_on_the_sgd_config(published, tmp_path):
    out = tmp_path / "tiny"
    proc = speakrl("train", "--recipe", "tiny-cpu", "--dataset", str(published), "--config", "sgd", "--output-dir", str(out),
                   "--max-steps", "2", "--set", "pretrain.max_steps=1", "--set", "sft.max_steps=1", "--set", "report_to=none", "--set", "max_train_samples=16",
                   "--set", "per_device_train_batch_size=4", "--set", "num_generations=2", "--set", "max_completion_length=16",
                   "--set", "tiny_model={vocab_size: 512, hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    history = json.loads((out / "grpo" / "log_history.json").read_text())
    assert len([h for h in history if "reward" in h]) == 2
    proc = speakrl("eval", "--model", str(out / "grpo"), "--dataset", str(published), "--config", "sgd", "--split", "train",
                   "--catalog", str(SLICE / "schema.json"), "--limit", "2", "--max-turns", "2", "--max-new-tokens", "8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "task completion" in proc.stdout
    metrics = json.loads((out / "grpo" / "eval_train.json").read_text())
    assert metrics["dialogues"] == 2 and metrics["split"] == "train"


def test_load_dialogues_reads_the_named_config(published):
    from speakrl.training.data import load_dialogues

    sgd_rows = load_dialogues(str(published), config="sgd")
    assert set(sgd_rows) == {"train"} and all(d.id.startswith("sgd-train-") for d in sgd_rows["train"])
    assert not any(d.id.startswith("sgd-") for split in load_dialogues(str(published)).values() for d in split)


def test_an_unknown_config_is_one_sentence(published, tmp_path):
    proc = speakrl("eval", "--model", "m", "--base-url", "http://127.0.0.1:9/v1", "--dataset", str(published),
                   "--config", "sgd_typo", "--split", "train")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "cannot load dataset" in proc.stderr and "sgd_typo" in proc.stderr


@pytest.mark.slow
def test_the_cards_trl_snippet_trains_on_the_sgd_configs(published, tiny_dir, tmp_path, monkeypatch):
    """The card's 'Use with TRL' code, pointed at `sgd` and `sgd_decision_points`, runs one step of each trainer."""
    from speakrl_testing.cards import card_snippet, run_card_snippet

    code = card_snippet(published, tiny_dir).replace('"<owner>/SpeakER"', repr(str(published)))  # published --to-dir
    repo = next(line for line in code.splitlines() if line.startswith("dialogues = load_dataset("))
    code = code.replace(repo, repo.replace(', split="train")', ', "sgd", split="train")')).replace('"decision_points"', '"sgd_decision_points"')
    trainers, namespace = run_card_snippet(code, monkeypatch, tmp_path)
    sft_dialogues, sft_points, grpo = trainers
    assert all(r.startswith("sgd-") for r in namespace["dialogues"]["id"]) and all(r.startswith("sgd-") for r in namespace["points"]["id"])
    for trainer in (sft_dialogues, sft_points):
        loss = [h["loss"] for h in trainer.state.log_history if "loss" in h] or [trainer.state.log_history[-1]["train_loss"]]
        assert all(math.isfinite(float(x)) for x in loss)
    assert any("rewards/asks_when_needed/mean" in h for h in grpo.state.log_history)
