"""The wheel's contents: every subpackage, and the default model mapped in from assets/."""

from __future__ import annotations

import subprocess
import sys
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


def test_the_prepare_stages_and_the_command_line_import_light():
    """``prepare`` workers never load torch (half a GB each); no command pays for torchvision's import."""
    code = (
        "import sys\n"
        "import mangacolor.prepare.aligned, mangacolor.prepare.borders, mangacolor.prepare.danbooru\n"
        "import mangacolor.prepare.lines, mangacolor.prepare.pair, mangacolor.prepare.runner\n"
        "assert 'torch' not in sys.modules, 'a prepare stage imports torch'\n"
        "import mangacolor.cli\n"
        "assert 'torchvision' not in sys.modules, 'the command line imports torchvision'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_bottleneck_width_matches_torchvision():
    from torchvision.models.resnet import Bottleneck

    from mangacolor.models.resnet_unet import BOTTLENECK_EXPANSION

    assert BOTTLENECK_EXPANSION == Bottleneck.expansion
