"""Write the benchmark model folders (random weights, real GPT-2 tokenizer) under .bench/.

    python -m bench.make_models               # .bench/gpt2-124M
    python -m bench.make_models 355M 1.5B     # .bench/gpt2-355M (gpt2-medium's shape), .bench/gpt2-1.5B (gpt2-xl's)

One at a time, each freed before the next: the 1.5B is 6.2 GB of float32, held once in memory while written.
"""

import shutil
import sys
from pathlib import Path

from tests.helpers import GPT2_124M, GPT2_355M, GPT2_1558M, make_model_folder

SHAPES = {"124M": GPT2_124M, "355M": GPT2_355M, "1.5B": GPT2_1558M}


def make(name: str) -> None:
    folder = Path(f".bench/gpt2-{name}")
    if (folder / "model.safetensors").is_file():
        print(f"{folder} exists")
        return
    # Written beside and renamed when complete, so an interrupted run leaves no folder that looks finished.
    partial = folder.with_name(f"{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    make_model_folder(partial, **SHAPES[name])
    shutil.rmtree(folder, ignore_errors=True)  # a folder without weights: left by an older, interrupted run
    partial.rename(folder)
    print(f"wrote {folder}")


def main(argv: list[str]) -> None:
    names = argv or ["124M"]
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        sys.exit(f"unknown shape {', '.join(unknown)}: choose from {', '.join(SHAPES)}")
    for name in names:
        make(name)


if __name__ == "__main__":
    main(sys.argv[1:])
