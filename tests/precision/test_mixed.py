"""The mixed-precision search: culprits first, then bisection and shrinking, within a probe budget."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edgerun.precision.mixed import find_mix

ORDER = [f"n{i}" for i in range(60)]


def needs(required: set[str]):  # type: ignore[no-untyped-def]
    """A model that meets its budget exactly when every node of ``required`` is kept."""

    def evaluate(keep: frozenset[str]) -> tuple[bool, str]:
        missing = required - keep
        return not missing, f"{len(missing)} missing"

    return evaluate


def test_a_safe_model_costs_one_probe() -> None:
    result = find_mix(ORDER, lambda: ["n3"], needs(set()))
    assert result.kept == ()
    assert [p.stage for p in result.probes] == ["first check"]


def test_culprits_that_suffice_end_the_search() -> None:
    result = find_mix(ORDER, lambda: ["n40", "n7"], needs({"n7", "n40"}))
    assert result.kept == ("n7", "n40")  # graph order
    assert [p.stage for p in result.probes] == ["first check", "nodes named by measured ranges"]


def test_culprits_are_not_measured_when_the_first_check_passes() -> None:
    def never() -> list[str]:
        raise AssertionError("measured ranges although the first check passed")

    assert find_mix(ORDER, never, needs(set())).kept == ()


def test_no_mix_when_even_the_largest_allowed_windows_fail() -> None:
    result = find_mix(ORDER, lambda: [], lambda keep: (False, "impossible budget"))
    assert result.kept is None
    assert [p.stage for p in result.probes] == ["first check", "largest suffix allowed", "largest prefix allowed"]
    assert {p.kept for p in result.probes[1:]} == {len(ORDER) // 2}


def test_a_mix_never_keeps_more_than_half_the_nodes() -> None:
    """Needing the first and the last node: no prefix or suffix of half the model holds both, so no mix."""
    result = find_mix(ORDER, lambda: [], needs({"n0", "n59"}))
    assert result.kept is None
    assert find_mix(ORDER, lambda: [], needs({"n0", "n59"}), max_kept_share=1.0).kept is not None


@settings(max_examples=60, deadline=None)
@given(st.sets(st.sampled_from(ORDER), min_size=1, max_size=3), st.sets(st.sampled_from(ORDER), max_size=2))
def test_the_answer_always_passes_and_stays_small(required: set[str], culprits: set[str]) -> None:
    result = find_mix(ORDER, lambda: sorted(culprits), needs(required), max_probes=60, max_kept_share=1.0)
    assert result.kept is not None
    assert required <= set(result.kept)
    # the culprits stay (they were measured), the rest is shrunk to what is needed plus little
    assert len(set(result.kept) - required - culprits) <= 2
    assert len(result.probes) <= 60


def test_bisection_finds_one_node_deep_inside() -> None:
    result = find_mix(ORDER, lambda: [], needs({"n31"}))
    assert result.kept == ("n31",)
    assert len(result.probes) < 25
