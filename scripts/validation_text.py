"""Write the embedded model's validation text: the held-out books of the corpus, cleaned as in training.

    python scripts/validation_text.py ../shared/corpus/gutenberg-children validation.txt
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine.tooling.corpus import load_documents, split_documents  # noqa: E402


def main() -> None:
    corpus, out = Path(sys.argv[1]), Path(sys.argv[2])
    _, validation = split_documents(load_documents(corpus))
    out.write_text("\n\n".join(d.text for d in validation), encoding="utf-8")
    print(f"wrote {out}: {len(validation)} books ({', '.join(d.name for d in validation)})")


if __name__ == "__main__":
    main()
