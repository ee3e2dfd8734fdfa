"""The frozen app's entry script: the same `main()` as the installed `gpt2-desktop` command."""

import multiprocessing
import sys
import warnings

# The bundle leaves NumPy out on purpose (the app never converts tensors to arrays); torch warns once.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

from app.main import main  # noqa: E402 - after the warning filter

if __name__ == "__main__":
    multiprocessing.freeze_support()  # a no-op except in frozen Windows/macOS children
    sys.exit(main())
