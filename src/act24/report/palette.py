"""One colour per variant, shared by every figure of a config (its order in `variants`)."""

from __future__ import annotations

import matplotlib.colors as mcolors
import seaborn as sns


def variant_palette(variants: list[str]) -> dict[str, str]:
    """Variant name -> hex colour: seaborn's default colours in config order (husl beyond ten)."""
    colours = sns.color_palette("tab10" if len(variants) <= 10 else "husl", len(variants))
    return {v: mcolors.to_hex(c) for v, c in zip(variants, colours)}
