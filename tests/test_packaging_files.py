"""The installer's own files, checked without building it (make package-test checks the built .deb)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DESKTOP = ROOT / "packaging" / "linux" / "gpt2-desktop.desktop"


def test_desktop_entry_starts_the_app_with_its_icon():
    entry = dict(line.split("=", 1) for line in DESKTOP.read_text().splitlines() if "=" in line)
    assert entry["Exec"] == "gpt2-desktop" and entry["Icon"] == "gpt2-desktop" and entry["Type"] == "Application"


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="needs Debian's desktop-file-utils")
def test_desktop_entry_validates():
    result = subprocess.run(["desktop-file-validate", str(DESKTOP)], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout


def test_every_icon_size_the_deb_installs_is_committed():
    icons = ROOT / "assets" / "icons"
    for size in (16, 32, 48, 64, 128, 256):
        assert (icons / f"gpt2-desktop-{size}.png").stat().st_size > 0
    assert (icons / "gpt2-desktop.svg").is_file() and (icons / "gpt2-desktop.ico").is_file()
