"""The dataset card's code, run in tests: its "Use with TRL" snippet on the tiny model, one step of each trainer."""

from __future__ import annotations

import re

TINY_ARGS = 'max_steps=1, per_device_train_batch_size=2, report_to="none", save_strategy="no", use_cpu=True, '


def card_snippet(dataset_dir, tiny_dir) -> str:
    """The card's TRL snippet, on the tiny model and for one step of each trainer."""
    card = (dataset_dir / "README.md").read_text()
    section = card[card.index("## Use with TRL"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert 'model = "Qwen/Qwen3-0.6B"' in code and code.count("SFTConfig(output_dir") == 2 and code.count("GRPOConfig(output_dir") == 1
    code = code.replace('model = "Qwen/Qwen3-0.6B"', f"model = {str(tiny_dir)!r}")
    code = code.replace("SFTConfig(output_dir", f"SFTConfig({TINY_ARGS}output_dir")
    return code.replace("GRPOConfig(output_dir", f"GRPOConfig({TINY_ARGS}num_generations=2, max_completion_length=8, output_dir")


def run_card_snippet(code: str, monkeypatch, tmp_path) -> tuple[list, dict]:
    """Run the card's code in `tmp_path`; return the TRL trainers it trained (in order) and its namespace."""
    import trl

    trainers: list = []

    def recording(cls):
        class Recording(cls):
            def train(self, *args, **kwargs):
                trainers.append(self)
                return super().train(*args, **kwargs)

        return Recording

    monkeypatch.setattr(trl, "SFTTrainer", recording(trl.SFTTrainer))
    monkeypatch.setattr(trl, "GRPOTrainer", recording(trl.GRPOTrainer))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "dataset card", "exec"), namespace)  # noqa: S102 - the card's own code
    return trainers, namespace
