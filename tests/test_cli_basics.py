"""The foldlite command: version, help, subcommand listing, user errors without tracebacks."""

import subprocess
import sys

import foldlite
from foldlite.cli import COMMANDS, main


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as e:
        assert e.code == 0
    assert foldlite.__version__ in capsys.readouterr().out


def test_help_lists_subcommands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in ("predict", "train", "evaluate", "refine", "data", "view"):
        assert name in out
        assert name in COMMANDS


def test_python_dash_m_works():
    r = subprocess.run([sys.executable, "-m", "foldlite", "--version"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0
    assert foldlite.__version__ in r.stdout


def test_config_unknown_and_missing_keys(tmp_path):
    import dataclasses

    import pytest

    from foldlite.config import ConfigError, apply_overrides, from_dict, load_config

    @dataclasses.dataclass(frozen=True)
    class Inner:
        lr: float
        betas: tuple[float, ...] = (0.9, 0.99)

    @dataclasses.dataclass(frozen=True)
    class Outer:
        name: str
        inner: Inner
        steps: int = 10

    cfg = from_dict(Outer, {"name": "x", "inner": {"lr": 1, "betas": [0.8, 0.9]}})
    assert cfg.inner.lr == 1.0 and cfg.inner.betas == (0.8, 0.9) and cfg.steps == 10
    hash(cfg)  # hashable, usable as a static jit argument
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(Outer, {"name": "x", "inner": {"lr": 1}, "stepz": 3})
    with pytest.raises(ConfigError, match="missing required key 'lr'"):
        from_dict(Outer, {"name": "x", "inner": {}})
    with pytest.raises(ConfigError, match="expected an integer"):
        from_dict(Outer, {"name": "x", "inner": {"lr": 1}, "steps": "many"})
    p = tmp_path / "c.yaml"
    p.write_text("name: a\ninner:\n  lr: 0.1\n")
    cfg = load_config(Outer, p, ["inner.lr=0.5", "steps=3"])
    assert cfg.inner.lr == 0.5 and cfg.steps == 3
    # PyYAML reads 3e-4 (no dot) as a string; a float field still takes it
    assert load_config(Outer, p, ["inner.lr=3e-4"]).inner.lr == 3e-4
    with pytest.raises(ConfigError, match="expected a number"):
        load_config(Outer, p, ["inner.lr=fast"])
    assert apply_overrides({"a": {"b": 1}}, ["a.c=x"]) == {"a": {"b": 1, "c": "x"}}
    p.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(Outer, p)


def test_atomic_write_leaves_no_partial_file(tmp_path):
    import pytest

    from foldlite.fileio import atomic_open, load_npz, save_npz

    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_open(target) as fh:
            fh.write("half")
            raise RuntimeError("crash")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    import numpy as np
    save_npz(tmp_path / "w.npz", {"a": np.arange(3)})
    assert load_npz(tmp_path / "w.npz")["a"].tolist() == [0, 1, 2]
    with pytest.raises(TypeError):
        save_npz(tmp_path / "bad.npz", {"a": np.array([{}], dtype=object)})
