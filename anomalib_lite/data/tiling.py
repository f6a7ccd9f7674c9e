"""Tiles: score images larger than a model's input piece by piece (``?tile=256`` on a data spec).

A defect of a few pixels vanishes when a 2,000 px photograph is resized to 224; cutting it into
overlapping tiles keeps every pixel at its own resolution. Each tile is a sample for the detector;
an image's score is the largest of its tiles' scores and its map is the tiles' maps stitched back,
averaged where tiles overlap (anomalib's tiler does the same).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import AnomalyError

__all__ = ["Tiling"]


@dataclass(frozen=True)
class Tiling:
    """Square tiles of ``tile`` pixels; neighbours share ``overlap`` of a tile (0 <= overlap < 1)."""

    tile: int
    overlap: float = 0.25

    def __post_init__(self):
        if not isinstance(self.tile, int) or isinstance(self.tile, bool) or self.tile < 8:
            raise ValueError(f"tile '{self.tile}' must be an integer of at least 8 pixels")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"overlap '{self.overlap}' must be in [0, 1)")

    @property
    def stride(self) -> int:
        return max(1, round(self.tile * (1 - self.overlap)))

    def starts(self, size: int) -> list[int]:
        """Tile origins along an axis of ``size`` pixels: every ``stride``, the last flush with
        the edge, so every pixel is covered."""
        if size < self.tile:
            raise AnomalyError(f"data: images of {size} px are smaller than the {self.tile} px tile; use a smaller tile= or drop it")
        out = list(range(0, size - self.tile + 1, self.stride))
        if out[-1] != size - self.tile:
            out.append(size - self.tile)
        return out

    def count(self, height: int, width: int) -> int:
        return len(self.starts(height)) * len(self.starts(width))

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(n, C, H, W) images -> (n * tiles, C, tile, tile), the tiles of each image together."""
        ys, xs = self.starts(x.shape[-2]), self.starts(x.shape[-1])
        t = self.tile
        tiles = [x[:, :, y : y + t, c : c + t] for y in ys for c in xs]
        return torch.stack(tiles, dim=1).reshape(-1, *x.shape[1:2], t, t)

    def stitch(self, maps: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(n * tiles, tile, tile) tile maps -> (n, height, width), overlaps averaged."""
        ys, xs = self.starts(height), self.starts(width)
        t, per = self.tile, len(ys) * len(xs)
        maps = maps.reshape(-1, per, t, t)
        out = maps.new_zeros((maps.shape[0], height, width))
        count = maps.new_zeros((height, width))
        k = 0
        for y in ys:
            for c in xs:
                out[:, y : y + t, c : c + t] += maps[:, k]
                count[y : y + t, c : c + t] += 1
                k += 1
        return out / count

    def to_dict(self) -> dict:
        return {"tile": self.tile, "overlap": self.overlap}

    @classmethod
    def from_dict(cls, d: dict | None) -> Tiling | None:
        return None if not d else cls(int(d["tile"]), float(d.get("overlap", 0.25)))
