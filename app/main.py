"""`gpt2-desktop`: with a subcommand, the command line; with none, the window."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from engine.cli import main as cli_main

    if argv:
        return cli_main(argv)
    print(
        "gpt2-desktop: the desktop window is not part of this build yet; "
        'try: gpt2-desktop generate --prompt "Once upon a time"',
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
