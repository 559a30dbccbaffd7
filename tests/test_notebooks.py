"""The quickstart notebook executes top to bottom on the tiny preset (it imports synthseq and defines nothing)."""

from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quickstart_executes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("SYNTHSEQ_NOTEBOOK_STEPS", "20")
    nb = nbformat.read(NOTEBOOKS / "01_quickstart.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, timeout=500, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "report.html" in text and "test subjects" in text


def test_notebook_is_generated_from_its_script():
    """01_quickstart.ipynb must match notebooks/make_quickstart.py (edit the script, then regenerate)."""
    nbformat = pytest.importorskip("nbformat")
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_quickstart", NOTEBOOKS / "make_quickstart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    on_disk = nbformat.read(NOTEBOOKS / "01_quickstart.ipynb", as_version=4)
    assert [c.source for c in on_disk.cells] == [c.source for c in module.build().cells]
