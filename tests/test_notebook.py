"""The seed notebook (docs/seed-notebook.ipynb): stored without outputs, and it runs top to bottom on a fresh kernel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "seed-notebook.ipynb"


def test_notebook_is_stored_without_outputs():
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    assert code, f"{NOTEBOOK} has no code cells"
    for number, cell in enumerate(code, start=1):
        assert cell["outputs"] == [], f"code cell {number} of {NOTEBOOK.name} is stored with outputs: clear them"
        assert cell["execution_count"] is None, f"code cell {number} of {NOTEBOOK.name} has an execution count"


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="needs the dev extra: pip install -e '.[dev]'")
    nbclient = pytest.importorskip("nbclient", reason="needs the dev extra: pip install -e '.[dev]'")
    kernelspec = pytest.importorskip("ipykernel.kernelspec", reason="needs the dev extra: pip install -e '.[dev]'")
    # A kernel of this very Python, whatever kernels the machine has installed; its temporary files in tmp_path.
    kernelspec.write_kernel_spec(tmp_path / "jupyter" / "kernels" / "rnnmt-test")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=240, kernel_name="rnnmt-test",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # a cell that raises fails the test with its traceback (CellExecutionError)
    assert not any((tmp_path / "tmp").glob("rnnmt-notebook-*")), "the notebook's last cell leaves nothing behind"
