"""Find a small set of nodes to keep in higher precision so that a converted model meets its budget.

Each probe is a real conversion run on the check samples (``evaluate``). The order: nothing kept
(most models pass here, one probe); the culprits named from measured ranges; then, as
Polygraphy's ``debug precision`` does by hand, bisection over the remaining nodes in
topological order for the shortest suffix and the shortest prefix that pass, the span they
share, and delta-debugging style shrinking of it in halves, quarters, ... while probes remain.
A mix keeps at most half the nodes (more is FP32 in all but name): if neither the largest
allowed suffix nor the largest allowed prefix passes, there is no mix.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Verdict = tuple[bool, str]
"""Whether a probe met the budget, and a one-line summary of its figures."""
Evaluate = Callable[[frozenset[str]], Verdict]

MAX_PROBES = 40
"""Probes per search: bisection of a 500-node model takes about 18, the rest shrink the window."""
MAX_KEPT_SHARE = 0.5
"""A mix keeping more than this share of the nodes is no conversion worth the name: no mix, run FP32."""


@dataclass(frozen=True)
class Probe:
    """One conversion tried: how many nodes it kept, whether it passed, and what it cost."""

    stage: str
    kept: int
    passed: bool
    seconds: float
    detail: str

    def to_dict(self) -> dict[str, object]:
        return {"stage": self.stage, "kept": self.kept, "passed": self.passed, "seconds": self.seconds,
                "detail": self.detail}  # fmt: skip


@dataclass(frozen=True)
class MixResult:
    kept: tuple[str, ...] | None
    """Nodes to keep, in graph order; None when no mix meets the budget."""
    probes: tuple[Probe, ...]


def find_mix(
    order: Sequence[str],
    culprits: Callable[[], Sequence[str]],
    evaluate: Evaluate,
    *,
    max_probes: int = MAX_PROBES,
    max_kept_share: float = MAX_KEPT_SHARE,
) -> MixResult:
    """The nodes (of ``order``) to keep so that ``evaluate`` passes; ``culprits()`` are tried first.

    No mix (``kept`` None) when neither the largest prefix nor the largest suffix a mix may keep
    (``max_kept_share`` of the nodes) passes.
    """
    search = _Search(order, evaluate, max_probes, int(max_kept_share * len(order)))
    if search.passes((), "first check"):
        return search.result(())
    named = set(culprits())  # measured only now: a model that passes its first check never pays for it
    base = [n for n in order if n in named]
    if base and search.passes(base, "nodes named by measured ranges"):
        return search.result(base)
    rest = [n for n in order if n not in named]
    room = min(len(rest), search.max_kept - len(base))
    if room <= 0:
        return search.result(None)
    # the largest windows a mix may keep: if neither passes, no smaller one will
    suffix_ok = search.passes([*base, *rest[len(rest) - room :]], "largest suffix allowed")
    prefix_ok = search.passes([*base, *rest[:room]], "largest prefix allowed")
    if not (suffix_ok or prefix_ok):
        return search.result(None)
    suffix = (
        search.shortest(base, rest, lambda k: rest[len(rest) - k :], "bisect from the outputs", room)
        if (suffix_ok)
        else room
    )
    prefix = search.shortest(base, rest, lambda k: rest[:k], "bisect from the inputs", room) if prefix_ok else room
    if suffix_ok and prefix_ok:
        # the shortest suffix starts at the first node needed, the shortest prefix ends at the last one:
        # what they share holds every needed node when keeping more never hurts
        window = rest[len(rest) - suffix : prefix]
        if len(window) in (0, min(suffix, prefix)) or not search.passes([*base, *window], "between the two"):
            window = rest[len(rest) - suffix :] if suffix <= prefix else rest[:prefix]
    else:
        window = rest[len(rest) - suffix :] if suffix_ok else rest[:prefix]
    window = search.shrink(base, window)
    return search.result([*base, *window])


class _Search:
    """Probe bookkeeping: the order to report in, the budget of probes, and what each probe found."""

    def __init__(self, order: Sequence[str], evaluate: Evaluate, max_probes: int, max_kept: int) -> None:
        self.index = {name: i for i, name in enumerate(order)}
        self.max_kept = max_kept
        self.evaluate = evaluate
        self.max_probes = max_probes
        self.probes: list[Probe] = []

    @property
    def left(self) -> int:
        return self.max_probes - len(self.probes)

    def passes(self, keep: Sequence[str], stage: str) -> bool:
        started = time.perf_counter()
        passed, detail = self.evaluate(frozenset(keep))
        self.probes.append(Probe(stage, len(set(keep)), passed, time.perf_counter() - started, detail))
        return passed

    def shortest(
        self, base: list[str], rest: list[str], window: Callable[[int], list[str]], stage: str, high: int
    ) -> int:
        """The smallest k whose window (with ``base``) passes; k = ``high`` is known to pass, k = 0 to fail."""
        low = 0
        while high - low > 1 and self.left > 0:
            middle = (low + high) // 2
            if self.passes([*base, *window(middle)], stage):
                high = middle
            else:
                low = middle
        return high

    def shrink(self, base: list[str], window: list[str]) -> list[str]:
        """Drop chunks of ``window`` (halves, then quarters, ...) whose removal still passes."""
        chunk = len(window) // 2
        while chunk >= 1 and self.left > 0:
            start = 0
            while start < len(window) and self.left > 0:
                candidate = window[:start] + window[start + chunk :]
                if candidate and self.passes([*base, *candidate], "shrink the kept set"):
                    window = candidate
                else:
                    start += chunk
            chunk //= 2
        return window

    def result(self, kept: Sequence[str] | None) -> MixResult:
        if kept is not None and len(set(kept)) > self.max_kept:
            kept = None
        ordered = None if kept is None else tuple(sorted(set(kept), key=lambda n: self.index.get(n, len(self.index))))
        return MixResult(ordered, tuple(self.probes))
