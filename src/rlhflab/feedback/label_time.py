"""How long a label takes: the time model behind "gold per annotator-minute" (Casper et al.
2023, §3.2.2: richer feedback carries more per label but costs more per label).

A feedback type is worth its price only if it beats plain comparisons in the same annotator
time, so every study that compares types spends one budget of seconds, T, and buys
⌊T / t(type)⌋ labels of each type:

    t(comparison)                = c            watch two clips, choose
    t(comparison + n part labels) = c + n·p     then judge each aligned part (clips seen)
    t(rating)                    = r            watch one clip, choose on the 1–7 scale
    t(correction)                = e            read one response, edit it into a good one
    t(critique)                  = w            read one response, write what is wrong with it

The defaults are an assumption, not a measurement: two 25-step clips run about 1.7 s each
at the labeling app's frame rate and people replay them (c = 6 s); a part label is a second
look at a few frames (p = 2 s); a rating watches one clip but has to place it on a scale with no
partner to compare against (r = 4 s). Text (the reviews tasks: one or two short clauses per
response) uses the same c and r; an edit of a few words takes e = 15 s and a written critique
w = 20 s (typing a sentence). The app records the seconds of every label
(`judgements.seconds`; the median per annotator on `/admin`), so with people these numbers can
be replaced by measured ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Kind = Literal["comparison", "rating", "correction", "critique"]


@dataclass(frozen=True)
class LabelTime:
    """Seconds per label of each type (the defaults are assumed, see the module docstring)."""

    comparison: float = 6.0
    part: float = 2.0
    rating: float = 4.0
    correction: float = 15.0
    critique: float = 20.0

    def seconds(self, kind: Kind, parts: int = 0) -> float:
        """t(kind): a comparison with `parts` part labels, a rating, a correction, a critique."""
        if kind == "comparison":
            return self.comparison + parts * self.part
        return {"rating": self.rating, "correction": self.correction, "critique": self.critique}[
            kind
        ]

    def affordable(self, minutes: float, kind: Kind, parts: int = 0) -> int:
        """How many labels of one type fit in `minutes` of annotator time."""
        return math.floor(60.0 * minutes / self.seconds(kind, parts) + 1e-9)
