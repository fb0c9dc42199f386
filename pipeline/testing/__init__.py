"""Test helpers that ship with the package: a local OpenAI-compatible server used by tests and benchmarks."""
