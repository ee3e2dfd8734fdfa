"""llama.cpp beside ours: build the llama.cpp that `llama-cpp-python` vendors (its PyPI source package)
into .bench/llama.cpp, convert the bench model to GGUF with its own converter, quantise it.

    python -m engine.tooling.llama_cpp build                 # minutes: llama-bench, llama-quantize, llama-server
    python -m engine.tooling.llama_cpp convert MODEL_FOLDER  # MODEL.f32.gguf, .f16, .q8_0, .q4_0 in .bench/gguf/

`make bench-llama` builds it; `make bench` then measures llama.cpp in the same run as ours
(`gpt2-desktop bench --llama-cpp .bench/llama.cpp` converts the model on first use). A tool for the
bench only: the app never runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "0.3.36"  # llama-cpp-python, whose vendor/llama.cpp is the llama.cpp measured
ROOT = Path(".bench/llama.cpp")
GGUF = Path(".bench/gguf")
TYPES = ("f32", "f16", "q8_0", "q4_0")
TOOLS = ("llama-bench", "llama-quantize", "llama-server")


def tool(name: str, root: Path = ROOT) -> Path:
    return root / "build" / "bin" / name


def build(root: Path = ROOT) -> None:
    if all(tool(t, root).exists() for t in TOOLS):
        print(f"{root} is built")
        return
    source = root / "src"
    if not (source / "CMakeLists.txt").exists():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
                            f"llama-cpp-python=={VERSION}", "-d", tmp], check=True)
            archive = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
            with tarfile.open(archive) as tar:
                prefix = f"{archive.name.removesuffix('.tar.gz')}/vendor/llama.cpp/"
                members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
                for m in members:
                    m.name = m.name[len(prefix):]
                tar.extractall(source, members=[m for m in members if m.name], filter="data")
    build_dir = root / "build"
    subprocess.run(["cmake", "-S", str(source), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
                    "-DGGML_NATIVE=ON", "-DLLAMA_CURL=OFF", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                    "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_BUILD_TOOLS=ON"], check=True)
    subprocess.run(["cmake", "--build", str(build_dir), "--config", "Release", "-j", str(os.cpu_count() or 2),
                    "--target", *TOOLS], check=True)
    print(f"built {', '.join(TOOLS)} in {build_dir / 'bin'}")


def convert(model: Path, root: Path = ROOT, out: Path = GGUF) -> dict[str, Path]:
    """The model as GGUF in every type of TYPES, with llama.cpp's own converter and quantiser."""
    out.mkdir(parents=True, exist_ok=True)
    files = {t: out / f"{model.name}.{t}.gguf" for t in TYPES}
    if all(f.exists() for f in files.values()):
        return files
    with tempfile.TemporaryDirectory() as tmp:
        # The converter reads the context length from "n_ctx", which transformers' GPT-2 config lacks: it reads
        # a folder of links to the model's files (not copies: the 1.5B's weights are 6.2 GB) with its own config.
        copy = Path(tmp) / model.name
        copy.mkdir()
        for f in model.iterdir():
            if f.name != "config.json":
                (copy / f.name).symlink_to(f.resolve())
        config = json.loads((model / "config.json").read_text())
        config.setdefault("n_ctx", config.get("n_positions", 1024))
        (copy / "config.json").write_text(json.dumps(config))
        converter = root / "src" / "convert_hf_to_gguf.py"
        env = {**os.environ, "PYTHONPATH": str(root / "src" / "gguf-py")}
        subprocess.run([sys.executable, str(converter), str(copy), "--outtype", "f32", "--outfile", str(files["f32"])],
                       check=True, env=env)
    for kind in TYPES[1:]:
        subprocess.run([str(tool("llama-quantize", root)), str(files["f32"]), str(files[kind]), kind.upper()],
                       check=True, capture_output=True)
    return files


def llama_bench(model_file: Path, threads: int, prompt: int, new: int, repeats: int = 3,
                root: Path = ROOT) -> float:
    """llama-bench's tokens per second (average over `repeats`) for a prompt of `prompt` or `new` tokens."""
    result = subprocess.run([str(tool("llama-bench", root)), "-m", str(model_file), "-t", str(threads),
                             "-p", str(prompt), "-n", str(new), "-r", str(repeats), "-o", "json"],
                            capture_output=True, text=True, check=True)
    return float(json.loads(result.stdout)[0]["avg_ts"])


def main(argv: list[str]) -> None:
    if argv[:1] == ["build"]:
        build()
    elif argv[:1] == ["convert"] and len(argv) == 2:
        for kind, path in convert(Path(argv[1])).items():
            print(f"{kind:5} {path}")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
