#!/bin/sh
# Build the macOS app and disk image: dist/gpt2-desktop.app and dist/gpt2-desktop-<version>.dmg.
# UNTESTED: written to the same spec as the Linux .deb, never run here.
# Needs Python 3.11+ (python.org or Homebrew) and the Xcode command-line tools (hdiutil, codesign).
# The app is signed ad hoc (PyInstaller does this); signing with a Developer ID and notarising
# (`codesign`, `xcrun notarytool`) are needed before others can open it without a warning.
set -eu
cd "$(dirname "$0")/../.."

test -x .venv/bin/python || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# On macOS the PyPI torch wheel is the CPU (and MPS) build; pin the version the project is tested with.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
# Pillow lets PyInstaller turn the PNG icon into the .icns a .app needs.
.venv/bin/python -m pip install --quiet -e ".[package]" Pillow

.venv/bin/pyinstaller --noconfirm --distpath dist --workpath build/pyinstaller packaging/gpt2-desktop.spec

# Smoke test of the frozen app: its own CLI, then the window offscreen with one reply.
app_bin=dist/gpt2-desktop.app/Contents/MacOS/gpt2-desktop
tmp=$(mktemp -d)
export GPT2_DESKTOP_DATA_DIR="$tmp/data" GPT2_DESKTOP_CONFIG_DIR="$tmp/config"
"$app_bin" --version
"$app_bin" generate --prompt "Once upon a time" --max-new-tokens 8 --temperature 0
QT_QPA_PLATFORM=offscreen "$app_bin" --self-test
rm -rf "$tmp"

version=$(.venv/bin/python -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")
rm -rf build/dmg && mkdir -p build/dmg
cp -R dist/gpt2-desktop.app build/dmg/
ln -s /Applications build/dmg/Applications  # drag the app onto it to install
hdiutil create -volname "gpt2-desktop $version" -srcfolder build/dmg -ov -format UDZO "dist/gpt2-desktop-$version.dmg"
echo "wrote dist/gpt2-desktop-$version.dmg"
