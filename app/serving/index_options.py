"""Which index a build makes, apart from the index itself (app/serving/index.py), so that the
settings can name it without loading FAISS."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

IndexKind = Literal["flat", "hnsw", "ivf"]


@dataclass(frozen=True)
class IndexOptions:
    """Which index a build makes, and the approximate indexes' build and search parameters."""

    approximate_from: int = 250_000  # galleries this large or larger get an approximate index
    approximate_kind: Literal["hnsw", "ivf"] = "hnsw"
    hnsw_m: int = 32  # graph degree: memory and recall
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 256  # candidates kept while searching: recall against time
    ivf_lists: int = 0  # 0: about 4 x sqrt(images), at least 39 training images per list
    ivf_nprobe: int = 64  # lists scanned per query

    def kind_for(self, size: int) -> IndexKind:
        return self.approximate_kind if size >= self.approximate_from else "flat"

    def ivf_lists_for(self, size: int) -> int:
        if self.ivf_lists:
            return self.ivf_lists
        return max(1, min(int(4 * math.sqrt(size)), size // 39))
