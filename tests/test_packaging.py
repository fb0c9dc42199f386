"""The wheel: one `speakrl` namespace, its data files, no test servers, and a console script that runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy, so setuptools' build/ and egg-info never land in the work tree.
    source = out / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", "outputs", "build", "*.egg-info",
                                                                "__pycache__"))
    # --no-build-isolation: setuptools comes from the dev extra, so the build needs no network.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(source)], check=True, capture_output=True, text=True)
    return zipfile.ZipFile(next(out.glob("speakrl-*.whl")))


def test_the_wheel_installs_one_namespace(wheel):
    top = {name.split("/")[0] for name in wheel.namelist() if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"speakrl"}  # no top-level pipeline, schemas, prompts or training
    names = set(wheel.namelist())
    for expected in ("speakrl/pipeline/runner.py", "speakrl/schemas/tools/restaurants.json",
                     "speakrl/prompts/dataset_card.md.j2", "speakrl/training/recipes/tiny-cpu.yaml", "speakrl/py.typed"):
        assert expected in names
    assert not any("speakrl_testing" in n or "/testing/" in n for n in names)  # test servers stay out of the wheel


def test_the_wheel_metadata(wheel):
    meta = next(wheel.read(n).decode() for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    assert "License-Expression: Apache-2.0" in meta or "License: Apache-2.0" in meta
    assert "Project-URL:" in meta and "Classifier:" in meta
    entry_points = next(wheel.read(n).decode() for n in wheel.namelist() if n.endswith("entry_points.txt"))
    assert "speakrl = speakrl.cli:main" in entry_points
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in wheel.namelist())


def test_python_dash_m_speakrl():
    version = subprocess.run([sys.executable, "-m", "speakrl", "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("speakrl ")
    for module in ("speakrl", "speakrl.training"):  # accelerate launch -m speakrl.training ...
        help_ = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=True)
        assert "train" in help_.stdout and "publish" in help_.stdout
