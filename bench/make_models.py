"""Write the benchmark model folders (random weights, real GPT-2 tokenizer) under .bench/."""

from pathlib import Path

from tests.helpers import GPT2_124M, make_model_folder


def main() -> None:
    folder = Path(".bench/gpt2-124M")
    if (folder / "model.safetensors").is_file():
        print(f"{folder} exists")
        return
    make_model_folder(folder, **GPT2_124M)
    print(f"wrote {folder}")


if __name__ == "__main__":
    main()
