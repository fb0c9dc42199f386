"""speakrl: generate SpeakER (ambiguous task-oriented dialogues with clarification questions), publish it to the
Hugging Face Hub, and train agents on it with GRPO.

The packages: `speakrl.pipeline` (catalog, stages, runner), `speakrl.schemas` (the pydantic data contract),
`speakrl.prompts` (jinja2 templates) and `speakrl.training` (TRL trainers, rewards, eval).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("speakrl")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
