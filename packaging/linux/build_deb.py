"""Wrap the PyInstaller bundle (dist/gpt2-desktop/) in a Debian package: dist/gpt2-desktop_<version>_<arch>.deb.

Layout of the package:
  /opt/gpt2-desktop/                         the one-folder bundle (executable + _internal/)
  /usr/bin/gpt2-desktop                      a symlink to /opt/gpt2-desktop/gpt2-desktop
  /usr/share/applications/gpt2-desktop.desktop
  /usr/share/icons/hicolor/<n>x<n>/apps/gpt2-desktop.png, scalable/apps/gpt2-desktop.svg
  /usr/share/doc/gpt2-desktop/copyright

No maintainer scripts: dpkg's file triggers (desktop-file-utils, hicolor-icon-theme) refresh the
menu and icon caches, and dpkg removes exactly what it installed. Nothing is ever written to a
user's home folder, so history and settings (platformdirs locations) survive upgrade and removal.

Run by `make package` after PyInstaller; needs dpkg-deb (Debian/Ubuntu).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "dist" / "gpt2-desktop"
STAGE = ROOT / "build" / "deb"
ICONS = ROOT / "assets" / "icons"
NAME = "gpt2-desktop"

# Shared libraries the bundle takes from the system (checked by loading every bundled library);
# the X11/xcb ones are bundled when the build machine has them, and are listed so that a
# bundle built without them still finds them. Qt's Wayland plugins need the libwayland ones.
DEPENDS = [
    "libc6 (>= 2.28)", "libstdc++6", "libgl1", "libegl1", "libfontconfig1", "libfreetype6",
    "libglib2.0-0", "libdbus-1-3", "libxkbcommon0", "libxkbcommon-x11-0", "libx11-6", "libx11-xcb1",
    "libxcb1", "libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1", "libxcb-image0", "libxcb-render-util0",
    "libxcb-randr0", "libxcb-shape0", "libxcb-xfixes0", "libxcb-xkb1",
    "libwayland-client0", "libwayland-cursor0", "libwayland-egl1",
]

DESCRIPTION = """Run GPT-2-family language models locally
 A desktop window with a chat, a notebook and prompt-template tasks, and a
 command line with the same engine, for GPT-2-family models on the CPU.
 It ships a small GPT-2 of its own (7M parameters, trained on public-domain
 fairy tales) that works offline from the first start, and can download
 GPT-2, DistilGPT2 and DialoGPT from the Hugging Face Hub."""

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: gpt2-desktop

Files: *
License: MIT
Comment: gpt2-desktop itself, and its embedded model tales-7m.
 The bundle in /opt/gpt2-desktop/_internal/ also holds, each under its own license:
 Python (PSF), PyTorch (BSD-3-Clause), Qt 6 and PySide6 (LGPL-3.0, dynamically
 linked, in _internal/PySide6/), tokenizers, safetensors and huggingface_hub
 (Apache-2.0), platformdirs (MIT).
"""


def project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def architecture() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], check=True, capture_output=True, text=True).stdout.strip()


def size_kib(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) // 1024 + 1


def stage(version: str, arch: str) -> None:
    """Lay out the package's files under build/deb/ exactly as they will be installed."""
    shutil.rmtree(STAGE, ignore_errors=True)
    opt = STAGE / "opt" / NAME
    shutil.copytree(BUNDLE, opt, symlinks=True)
    (STAGE / "usr" / "bin").mkdir(parents=True)
    (STAGE / "usr" / "bin" / NAME).symlink_to(f"/opt/{NAME}/{NAME}")
    applications = STAGE / "usr" / "share" / "applications"
    applications.mkdir(parents=True)
    shutil.copyfile(ROOT / "packaging" / "linux" / f"{NAME}.desktop", applications / f"{NAME}.desktop")
    hicolor = STAGE / "usr" / "share" / "icons" / "hicolor"
    for png in sorted(ICONS.glob(f"{NAME}-*.png")):
        size = png.stem.rsplit("-", 1)[1]
        (hicolor / f"{size}x{size}" / "apps").mkdir(parents=True)
        shutil.copyfile(png, hicolor / f"{size}x{size}" / "apps" / f"{NAME}.png")
    (hicolor / "scalable" / "apps").mkdir(parents=True)
    shutil.copyfile(ICONS / f"{NAME}.svg", hicolor / "scalable" / "apps" / f"{NAME}.svg")
    doc = STAGE / "usr" / "share" / "doc" / NAME
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(COPYRIGHT)

    control = STAGE / "DEBIAN"
    control.mkdir()
    (control / "control").write_text(
        f"Package: {NAME}\n"
        f"Version: {version}\n"
        f"Architecture: {arch}\n"
        "Maintainer: gpt2-desktop developers <gpt2-desktop@users.noreply.github.com>\n"
        f"Installed-Size: {size_kib(STAGE)}\n"
        f"Depends: {', '.join(DEPENDS)}\n"
        "Section: utils\n"
        "Priority: optional\n"
        f"Description: {DESCRIPTION}\n")
    for path in STAGE.rglob("*"):  # dpkg wants 0755 folders and no group/other write bits
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() or path.stat().st_mode & 0o111 else 0o644)


def main() -> int:
    if not (BUNDLE / NAME).is_file():
        print(f"error: {BUNDLE / NAME} is missing; run PyInstaller first (make package)", file=sys.stderr)
        return 1
    if shutil.which("dpkg-deb") is None:
        print("error: dpkg-deb is not installed (Debian/Ubuntu: apt-get install dpkg)", file=sys.stderr)
        return 1
    version, arch = project_version(), architecture()
    stage(version, arch)
    deb = ROOT / "dist" / f"{NAME}_{version}_{arch}.deb"
    began = time.monotonic()
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(STAGE), str(deb)], check=True,
                   stdout=subprocess.DEVNULL)
    print(f"wrote {deb.relative_to(ROOT)}: {deb.stat().st_size / 2**20:.0f} MiB, "
          f"installed size {size_kib(STAGE) / 1024:.0f} MiB (compressed in {time.monotonic() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
