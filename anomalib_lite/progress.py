"""Progress bars, made in one place: on a terminal and in verbose mode only (``--quiet`` and
non-terminals see none), on stderr, removed when done.

Every stage that can take more than a second has one: reading data and computing features
(samples), the coreset (passes), scoring and calibration (samples), training (one bar over every
step of every epoch, its description naming the epoch, so its estimate is for the whole run, or
for what the time budget leaves).
"""
from __future__ import annotations

from tqdm.auto import tqdm

__all__ = ["bar"]


def bar(total: int | None, desc: str, verbose: bool, unit: str = "sample") -> tqdm:
    """A bar of ``total`` ``unit``s (None: unknown), shown only when ``verbose`` and on a terminal."""
    return tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True,
                disable=None if verbose else True)
