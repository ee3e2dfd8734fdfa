# Build the Windows installer: dist\gpt2-desktop-<version>-setup.exe.
# UNTESTED: written to the same spec as the Linux .deb, never run here.
# Needs Python 3.11+ (python.org) and Inno Setup 6 (iscc.exe on PATH). Run from any folder:
#   powershell -ExecutionPolicy Bypass -File packaging\windows\build.ps1
$ErrorActionPreference = "Stop"
Set-Location (Join-Path $PSScriptRoot "..\..")

if (-not (Test-Path .venv)) { python -m venv .venv }
$py = ".venv\Scripts\python.exe"
& $py -m pip install --quiet --upgrade pip
# On Windows the PyPI torch wheel is the CPU build; pin the version the project is tested with.
& $py -m pip install --quiet "torch==2.13.0"
& $py -m pip install --quiet -e ".[package]"

& ".venv\Scripts\pyinstaller.exe" --noconfirm --distpath dist --workpath build\pyinstaller packaging\gpt2-desktop.spec
if ($LASTEXITCODE -ne 0) { throw "PyInstaller failed" }

# Smoke test of the bundle before wrapping it: the console twin prints, the windowed .exe cannot.
$env:GPT2_DESKTOP_DATA_DIR = Join-Path $env:TEMP "gpt2-desktop-smoke\data"
$env:GPT2_DESKTOP_CONFIG_DIR = Join-Path $env:TEMP "gpt2-desktop-smoke\config"
& "dist\gpt2-desktop\gpt2-desktop-cli.exe" --version
& "dist\gpt2-desktop\gpt2-desktop-cli.exe" generate --prompt "Once upon a time" --max-new-tokens 8 --temperature 0
& "dist\gpt2-desktop\gpt2-desktop-cli.exe" --self-test
if ($LASTEXITCODE -ne 0) { throw "the frozen app's self-test failed" }

$version = & $py -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])"
iscc "/DAppVersion=$version" packaging\windows\gpt2-desktop.iss
if ($LASTEXITCODE -ne 0) { throw "Inno Setup failed" }
Write-Host "wrote dist\gpt2-desktop-$version-setup.exe"
