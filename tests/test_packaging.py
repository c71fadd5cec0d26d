"""The wheel's contents: every subpackage, and the default model mapped in from assets/."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_package_list_matches_the_source_tree():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "mangacolor").rglob("__init__.py")}
    assert listed == found | {"mangacolor.assets"}, "update [tool.setuptools] packages in pyproject.toml"
    assert config["package-dir"]["mangacolor.assets"] == "assets"
    data = config["package-data"]["mangacolor.assets"]
    assert all(any((ROOT / "assets").glob(pattern)) for pattern in data)
    shipped = {path.name for pattern in data for path in (ROOT / "assets").glob(pattern)}
    assert "default.safetensors" in shipped
