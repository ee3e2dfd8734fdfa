"""Render assets/icons/gpt2-desktop.svg to the PNG sizes desktops use, and a Windows .ico.

The .ico holds the same PNGs; macOS builds convert the 256 px PNG to .icns (PyInstaller, with Pillow).

Run after editing the SVG: `.venv/bin/python packaging/make_icons.py` (needs only PySide6).
The outputs are small and committed, so a build never needs to render them.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

ICONS = Path(__file__).resolve().parents[1] / "assets" / "icons"
SIZES = (16, 32, 48, 64, 128, 256)


def render(renderer: QSvgRenderer, size: int) -> QImage:
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    return image


def write_ico(pngs: list[Path], out: Path) -> None:
    """An ICO whose images are the PNG files themselves (Windows Vista and later read these)."""
    blobs = [png.read_bytes() for png in pngs]
    sizes = [QImage(str(png)).width() for png in pngs]
    offset = 6 + 16 * len(blobs)
    header = struct.pack("<HHH", 0, 1, len(blobs))
    entries = b""
    for size, blob in zip(sizes, blobs):
        side = 0 if size >= 256 else size  # 0 means 256 in an ICO directory entry
        entries += struct.pack("<BBBBHHII", side, side, 0, 0, 1, 32, len(blob), offset)
        offset += len(blob)
    out.write_bytes(header + entries + b"".join(blobs))


def main() -> int:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 - QPainter needs one
    renderer = QSvgRenderer(str(ICONS / "gpt2-desktop.svg"))
    if not renderer.isValid():
        print("error: assets/icons/gpt2-desktop.svg is not a valid SVG", file=sys.stderr)
        return 1
    for size in SIZES:
        render(renderer, size).save(str(ICONS / f"gpt2-desktop-{size}.png"))
    write_ico([ICONS / f"gpt2-desktop-{size}.png" for size in SIZES], ICONS / "gpt2-desktop.ico")
    print(f"wrote {len(SIZES)} PNGs to {ICONS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
