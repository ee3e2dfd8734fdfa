"""The frozen app's entry script: the same `main()` as the installed `gpt2-desktop` command."""

import multiprocessing
import sys

from app.main import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # a no-op except in frozen Windows/macOS children
    sys.exit(main())
