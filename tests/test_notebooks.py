"""The notebooks run top to bottom (nbclient, tiny settings, a time limit) and are stored clean."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("FOLDLITE_CACHE_DIR", str(Path(tempfile.gettempdir()) / "foldlite-test-cache"))

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ("quickstart.ipynb", "training.ipynb")
CELL_TIMEOUT = 300  # seconds per cell; the whole notebook takes far less with the tiny settings


def _load(name):
    import nbformat
    return nbformat.read(NOTEBOOKS / name, as_version=4)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_stored_without_outputs(name):
    import nbformat
    nb = _load(name)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, \
                f"{name}: a code cell is stored with outputs; clear them before committing"


def _execute(name, monkeypatch, tmp_path, fast_compile=False):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from nbclient import NotebookClient
    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        pytest.skip("no python3 Jupyter kernel installed (pip install ipykernel)")
    monkeypatch.setenv("FOLDLITE_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("FOLDLITE_NOTEBOOK_WORKDIR", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    if fast_compile:
        # Training steps are large XLA programs; a lower optimisation level halves their
        # compile time and costs nothing noticeable at these sizes.
        flags = os.environ.get("XLA_FLAGS", "")
        monkeypatch.setenv("XLA_FLAGS", f"{flags} --xla_backend_optimization_level=0 "
                                        "--xla_llvm_disable_expensive_passes=true".strip())
    nb = _load(name)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    return nb


def _outputs(nb, mime):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if mime in o.get("data", {})]


def test_quickstart_runs(monkeypatch, tmp_path):
    nb = _execute("quickstart.ipynb", monkeypatch, tmp_path)
    views = [o["data"]["text/html"] for o in _outputs(nb, "text/html") if "3Dmol" in o["data"]["text/html"]]
    assert len(views) >= 4  # by pLDDT, rainbow, overlay, animation
    assert any("TM-score" in v for v in views) and any("addModelsAsFrames" in v for v in views)
    assert len(_outputs(nb, "image/png")) >= 2  # the pLDDT and PAE plots
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "mean pLDDT" in text and "CA RMSD" in text


def test_training_runs(monkeypatch, tmp_path):
    nb = _execute("training.ipynb", monkeypatch, tmp_path, fast_compile=True)
    assert len(_outputs(nb, "image/png")) >= 1  # the live run's curves (and a shipped log's)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "trained 4 steps (done)" in text and "mean pLDDT" in text
    assert (tmp_path / "run" / "weights.npz").is_file()
