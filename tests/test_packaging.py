"""The wheel carries everything a command needs at run time (not only the Python modules)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from memtrain import cards

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_ships_the_dataset_card_templates(tmp_path):
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*pip, str(ROOT), "-w", str(tmp_path)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("memtrain-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    package = Path(cards.__file__).parent
    assert cards.DEFAULT_TEMPLATE.is_relative_to(package), "the card template must live inside the package"
    for template in cards.TEMPLATES.iterdir():
        assert f"memtrain/data_cards/{template.name}" in names
    assert (ROOT / "data_cards" / "episodes.md.j2").read_text() == cards.DEFAULT_TEMPLATE.read_text()
