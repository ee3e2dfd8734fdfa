"""`make package-test`: check the built .deb the way a person would use it, without installing it.

Unpacks dist/gpt2-desktop_<version>_<arch>.deb with `dpkg-deb -x` into a temporary prefix and checks:
its control metadata, the .desktop entry (desktop-file-validate, when installed) and icons, then
runs the frozen app from the prefix: `--version`, `generate` on the embedded model, and
`--self-test` (window offscreen, one reply). User data goes to temporary folders.
Needs only the standard library; prints the figures the README quotes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "gpt2-desktop"


class Failed(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failed(message)
    print(f"ok   {message}")


def run(args: list, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise Failed(f"{' '.join(map(str, args))} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def find_deb(version: str) -> Path:
    debs = sorted((ROOT / "dist").glob(f"{NAME}_{version}_*.deb"))
    if not debs:
        raise Failed(f"no dist/{NAME}_{version}_*.deb; run `make package` first")
    return debs[-1]


def check_metadata(deb: Path, version: str) -> None:
    info = subprocess.run(["dpkg-deb", "-I", str(deb)], check=True, capture_output=True, text=True).stdout
    fields = dict(line.strip().split(": ", 1) for line in info.splitlines() if ": " in line and line.startswith(" ")
                  and not line.startswith("  "))
    check(fields.get("Package") == NAME, f"control: Package is {NAME}")
    check(fields.get("Version") == version, f"control: Version is pyproject's {version}")
    check(fields.get("Architecture") not in (None, "all"), f"control: Architecture is {fields.get('Architecture')}")
    check(int(fields.get("Installed-Size", "0")) > 0, f"control: Installed-Size {fields.get('Installed-Size')} KiB")
    check("libc6" in fields.get("Depends", ""), "control: Depends names the system libraries")


def check_files(prefix: Path) -> None:
    desktop = prefix / "usr/share/applications" / f"{NAME}.desktop"
    check(desktop.is_file(), "menu entry in /usr/share/applications")
    if shutil.which("desktop-file-validate"):
        result = subprocess.run(["desktop-file-validate", str(desktop)], capture_output=True, text=True)
        check(result.returncode == 0 and not result.stdout.strip(), f"desktop-file-validate passes {result.stdout}")
    else:
        print("skip desktop-file-validate is not installed (Debian: desktop-file-utils)")
    entry = desktop.read_text()
    check(f"Exec={NAME}\n" in entry and f"Icon={NAME}\n" in entry, "menu entry runs gpt2-desktop with its icon")
    icons = prefix / "usr/share/icons/hicolor"
    check((icons / "256x256/apps" / f"{NAME}.png").is_file() and (icons / "scalable/apps" / f"{NAME}.svg").is_file(),
          "icons in the hicolor theme")
    link = prefix / "usr/bin" / NAME
    check(link.is_symlink() and os.readlink(link) == f"/opt/{NAME}/{NAME}", f"/usr/bin/{NAME} -> /opt/{NAME}/{NAME}")
    check((prefix / "opt" / NAME / "_internal/assets/models/tales-7m/model.safetensors").is_file(),
          "embedded model inside the bundle")


def _cpu_has_avx2() -> bool:
    try:
        return " avx2 " in Path("/proc/cpuinfo").read_text(errors="replace").replace("\n", " ")
    except OSError:
        return False


def check_app(app: Path, version: str, env: dict) -> dict:
    figures = {}
    out = run([app, "--version"], env).stdout.strip()
    check(out == f"{NAME} {version}", f"--version prints {out!r}")
    link = Path(env["HOME"]) / "bin" / NAME  # as /usr/bin/gpt2-desktop will be: a symlink into the bundle
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(app)
    out = run([link, "--version"], env).stdout.strip()
    check(out == f"{NAME} {version}", "the app runs through a symlink to its executable")
    began = time.monotonic()
    lines = run([app, "generate", "--prompt", "Once upon a time", "--max-new-tokens", "8", "--temperature", "0",
                 "--json"], env).stdout.strip().splitlines()
    figures["generate_s"] = time.monotonic() - began
    last = json.loads(lines[-1])
    check(last.get("done") is True and len(last["token_ids"]) > 0,
          f"generate from the embedded model: {last['text']!r} ({figures['generate_s']:.1f} s in all)")
    home = Path(env["HOME"])
    (home / "tales.txt").write_text("\n\n".join(
        f"Once upon a time there lived a king who had {n} daughters, and the youngest was the fairest." * 4
        for n in range(2, 60)))
    embedded = app.parent / "_internal" / "assets" / "models" / "tales-7m"
    run([app, "train", "--out", home / "run", "--data", home / "tales.txt", "--init", embedded, "--steps", "10",
         "--batch-size", "2", "--context", "64", "--eval-every", "10", "--eval-batches", "1"], env)
    lines = run([app, "generate", "--model", home / "run" / "model", "--prompt", "Once upon a time",
                 "--max-new-tokens", "4", "--temperature", "0", "--json"], env).stdout.strip().splitlines()
    check(json.loads(lines[-1]).get("done") is True, "train: a 10-step fine-tune writes a model that generates")
    began = time.monotonic()
    result = run([app, "--self-test"], {**env, "QT_QPA_PLATFORM": "offscreen"})
    figures["self_test_s"] = time.monotonic() - began
    check(result.stdout.rstrip().endswith("self-test: ok"), "--self-test: window shown and a reply written\n     "
          + result.stdout.strip().replace("\n", "\n     "))
    check((app.parent / "_internal" / "engine" / "core" / "_gpt2_step.so").is_file(), "the compiled decoding step is bundled")
    if _cpu_has_avx2():
        check("CPU decoding in the compiled step" in result.stdout, "--self-test: the frozen app decodes in it")
    return figures


def main() -> int:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    try:
        deb = find_deb(version)
        check_metadata(deb, version)
        with tempfile.TemporaryDirectory(prefix=f"{NAME}-smoke-") as tmp:
            prefix, home = Path(tmp) / "prefix", Path(tmp) / "home"
            began = time.monotonic()
            subprocess.run(["dpkg-deb", "-x", str(deb), str(prefix)], check=True)
            unpack_s = time.monotonic() - began
            check_files(prefix)
            env = {**os.environ, "HOME": str(home), "GPT2_DESKTOP_DATA_DIR": str(home / "data"),
                   "GPT2_DESKTOP_CONFIG_DIR": str(home / "config")}
            env.pop("PYTHONPATH", None)
            env.pop("VIRTUAL_ENV", None)
            figures = check_app(prefix / "opt" / NAME / NAME, version, env)
            installed = subprocess.run(["du", "-sh", str(prefix)], capture_output=True, text=True).stdout.split()[0]
    except (Failed, subprocess.SubprocessError, ValueError, KeyError) as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return 1
    print(f"\n{deb.name}: {deb.stat().st_size / 2**20:.0f} MiB; unpacked {installed} in {unpack_s:.0f} s; "
          f"generate {figures['generate_s']:.1f} s, self-test {figures['self_test_s']:.1f} s (process wall time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
