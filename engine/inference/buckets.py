"""GLTR's rank buckets, without torch: the engine's analysis and the window's stored token data both
sort ranks with them."""

from __future__ import annotations

BUCKETS = (10, 100, 1000)  # GLTR's: rank at most 10 (green), 100 (yellow), 1000 (red), beyond (violet)


def bucket_of(rank: int) -> int:
    """0 for a rank up to 10, 1 up to 100, 2 up to 1000, 3 beyond."""
    return next((i for i, limit in enumerate(BUCKETS) if rank <= limit), len(BUCKETS))
