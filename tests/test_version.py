"""One version source: `fpcore.__version__` (python/fpcore/__init__.py) is what `pip install .` records."""

import importlib.metadata
import os
from pathlib import Path

import pytest

import fpcore

ROOT = Path(__file__).resolve().parents[1]


def test_built_metadata_reports_the_package_version(tmp_path, monkeypatch):
    # The metadata hook runs no compiler, so this checks what `pip install .` would record, in well under a second.
    build = pytest.importorskip("scikit_build_core.build")
    monkeypatch.chdir(ROOT)
    dist_info = build.prepare_metadata_for_build_wheel(str(tmp_path))
    metadata = (tmp_path / dist_info / "METADATA").read_text()
    assert f"\nVersion: {fpcore.__version__}\n" in metadata, metadata[:300]


def test_installed_distribution_agrees_with_the_imported_package():
    # Only meaningful when the imported fpcore is the installed one (not the dev tree on PYTHONPATH).
    try:
        dist = importlib.metadata.distribution("fpcore")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("fpcore is not installed; the dev tree is checked by the metadata test")
    installed_init = Path(dist.locate_file("fpcore/__init__.py"))
    if not installed_init.exists() or not os.path.samefile(installed_init, fpcore.__file__):
        pytest.skip("the imported fpcore is the dev tree, not the installed distribution")
    assert dist.version == fpcore.__version__
