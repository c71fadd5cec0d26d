"""`mangacolor models` in-process: the text view of a checkpoint."""

from __future__ import annotations

from typer.testing import CliRunner

from mangacolor import checkpoint
from mangacolor.cli import app
from mangacolor.models import create_model

runner = CliRunner()


def test_models_shows_brackets_in_paths_and_metadata_as_text(tmp_path):
    """Square brackets in a folder name or a provenance value are not Rich markup (``[/x]`` used to crash)."""
    folder = tmp_path / "[/x]"
    ckpt = checkpoint.save(
        folder / "m.safetensors",
        create_model("unet", base_width=4, depth=3),
        {"data": "art[/old]", "note": "[red]v2"},
    )
    result = runner.invoke(app, ["models", str(ckpt)])
    assert result.exit_code == 0, result.output  # the path is the table's title
    assert "art[/old]" in result.stderr and "[red]v2" in result.stderr
