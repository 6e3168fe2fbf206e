"""Sources of layouts: /proc/iomem text, declarative layouts, the synthetic generator and the
embedded machines."""

from .embedded import SEED_IOMEM, seed_layout
from .iomem import layout_from_iomem, parse_entries
from .layout import Layout, Range, layout_from_dict, load_layout
from .synthetic import synthetic_layout

__all__ = [
    "Layout",
    "Range",
    "SEED_IOMEM",
    "layout_from_dict",
    "layout_from_iomem",
    "load_layout",
    "parse_entries",
    "seed_layout",
    "synthetic_layout",
]
