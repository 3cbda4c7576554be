"""One colour per variant, shared by every figure, the default config's variants the same in every config."""

from __future__ import annotations

import matplotlib.colors as mcolors
import seaborn as sns


def variant_palette(variants: list[str], first: list[str] = ()) -> dict[str, str]:
    """Variant name -> hex colour: seaborn's default colours (husl beyond ten), to the variants of `first` that
    are present in their order (the default config's, so that they keep their colours in every config), then to
    the others in config order."""
    order = [v for v in first if v in variants] + [v for v in variants if v not in first]
    colours = sns.color_palette("tab10" if len(order) <= 10 else "husl", len(order))
    return {v: mcolors.to_hex(c) for v, c in zip(order, colours)}
