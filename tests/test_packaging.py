"""Packaging: the named configs, the shipped weights and the model card, the shipped split sets,
the HTML page's script and style sheet are package data, so a wheel (a normal ``pip install .``)
carries them and ``load_model_config('small')``, ``foldlite train --config tiny`` and the
``promod3`` splits work from an installed copy as from a checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from foldlite.config import CONFIGS_DIR, available_configs, config_path
from foldlite.data.splits import SPLITS, SPLITS_DIR, available_splits, resolve_splits_prefix
from foldlite.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
KINDS = ("model", "train")


# Run from the unpacked wheel: argv[1], argv[2], argv[3] are the checkout's model and training
# config names and its split sets.
INSTALLED_CHECK = """
import sys
from pathlib import Path
sys.path.insert(0, SITE)
import foldlite
assert Path(foldlite.__file__).resolve().is_relative_to(Path(SITE).resolve()), foldlite.__file__
from foldlite.config import available_configs
from foldlite.model.config import load_model_config
from foldlite.train.config import load_train_config
from foldlite.viz.page import _package_file
from foldlite.data.splits import SPLITS, available_splits, read_split, resolve_splits_prefix
assert ",".join(available_configs("model")) == sys.argv[1], available_configs("model")
assert ",".join(available_configs("train")) == sys.argv[2], available_configs("train")
for name in available_configs("model"):
    load_model_config(name)
for name in available_configs("train"):
    load_model_config(load_train_config(name).model)
assert ",".join(available_splits()) == sys.argv[3], available_splits()
for name in available_splits():
    prefix = resolve_splits_prefix(name)
    assert prefix.resolve().is_relative_to(Path(SITE).resolve()), prefix
    assert all(read_split(f"{prefix}_{s}.txt") for s in SPLITS)
    assert Path(f"{prefix}_clusters.tsv").is_file()
assert "foldliteTrackStatus" in _package_file("page.js")
assert "#js-errors" in _package_file("page.css")
print("ok")
"""


def test_split_sets_names_and_paths(tmp_path, monkeypatch):
    assert available_splits() == ["promod3"]
    shipped = SPLITS_DIR / "promod3"
    assert resolve_splits_prefix("promod3") == shipped
    # where a checkout kept them before they became package data: read as the shipped set
    assert resolve_splits_prefix("data/splits/promod3") == shipped
    assert resolve_splits_prefix(tmp_path / "data" / "splits" / "promod3") == shipped
    # split files of one's own: taken as given, also under a shipped set's name
    mine = tmp_path / "mine"
    for s in SPLITS:
        (tmp_path / f"mine_{s}.txt").write_text("A_A\n")
    assert resolve_splits_prefix(mine) == mine
    monkeypatch.chdir(tmp_path)
    assert resolve_splits_prefix("mine") == Path("mine")
    (tmp_path / "promod3_train.txt").write_text("A_A\n")
    assert resolve_splits_prefix("promod3") == Path("promod3")
    assert resolve_splits_prefix("nothing/here") == Path("nothing/here")


def test_config_path_names_and_paths(tmp_path):
    assert available_configs("model") == ["base", "small", "tiny"]
    assert available_configs("train") == ["campaign", "finetune", "small", "tiny"]
    assert config_path("train", "tiny") == CONFIGS_DIR / "train" / "tiny.yaml"
    other = tmp_path / "mine.yaml"
    assert config_path("model", other) == other           # a YAML path is taken as given
    assert config_path("model", "sub/x") == Path("sub/x")  # so is anything with a separator
    with pytest.raises(ConfigError, match=r"unknown train config 'nope'.*'tiny'"):
        config_path("train", "nope")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the project's sources (no build files left in the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "foldlite", src / "foldlite",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "--no-index", "-q", "-w", str(out), str(src)],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0 and "invalid command 'bdist_wheel'" in r.stderr:
        pytest.skip("no bdist_wheel (the `wheel` package of the test extras): cannot build a wheel")
    assert r.returncode == 0, r.stderr[-2000:]
    (path,) = out.glob("foldlite-*.whl")
    return path


def test_wheel_carries_configs_weights_model_card_and_splits(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for kind in KINDS:
        for name in available_configs(kind):
            assert f"foldlite/configs/{kind}/{name}.yaml" in names
    assert {"foldlite/weights/default.npz", "foldlite/weights/MODEL_CARD.md",
            "foldlite/viz/page.js", "foldlite/viz/page.css"} <= names
    for name in available_splits():
        for part in [*SPLITS, "clusters", "splits"]:
            ext = {"clusters": "tsv", "splits": "json"}.get(part, "txt")
            assert f"foldlite/splits/{name}_{part}.{ext}" in names


def test_every_named_config_and_split_set_loads_from_the_installed_wheel(wheel, tmp_path):
    # A wheel installs by unpacking into site-packages: unpack it and import foldlite from there
    # (the script checks that foldlite.__file__ lies in it, not in a checkout).
    site = tmp_path / "site-packages"
    zipfile.ZipFile(wheel).extractall(site)
    script = tmp_path / "load_configs.py"
    script.write_text(INSTALLED_CHECK.replace("SITE", repr(str(site))))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # -I: isolated mode (no PYTHON* variables, no user site); the script puts the unpacked wheel
    # in front of the editable install that points at a checkout
    r = subprocess.run([sys.executable, "-I", str(script), ",".join(available_configs("model")),
                        ",".join(available_configs("train")), ",".join(available_splits())],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]
