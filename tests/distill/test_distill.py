"""edgerun.distill: the loss against hand computations, schedules, feature hooks, teachers, export, fit."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

torch = pytest.importorskip("torch", reason="edgerun.distill needs PyTorch: pip install 'edgerun[distill]'")

from torch import nn  # noqa: E402

from edgerun.distill import (  # noqa: E402
    IGNORE_INDEX,
    DistillationLoss,
    FeatureDistillation,
    FeatureTaps,
    TemperatureSchedule,
    export_onnx,
    fit_student,
    soft_targets,
)
from edgerun.errors import ConfigError, ConversionError, EdgerunError, InputError  # noqa: E402

FAST = settings(max_examples=30, deadline=None)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine: two torch threads measured 40x slower than one."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def np_log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def reference_loss(student: np.ndarray, teacher: np.ndarray, labels: np.ndarray, t: float, alpha: float) -> float:
    """The textbook formula in float64 numpy: alpha * T^2 * KL(p_t || p_s) (per sample) + (1 - alpha) * CE."""
    log_pt, log_ps = np_log_softmax(teacher / t), np_log_softmax(student / t)
    kl = float((np.exp(log_pt) * (log_pt - log_ps)).sum() / len(student))
    ce = float(-np_log_softmax(student)[np.arange(len(labels)), labels].mean())
    return alpha * t * t * kl + (1 - alpha) * ce


class Tiny(nn.Module):
    """A small CNN with named layers: ``features.2`` is 8 channels at 4x4, ``head.1`` 16 wide."""

    def __init__(self, width: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(width * 16, 16), nn.ReLU(), nn.Linear(16, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# --- the loss ---------------------------------------------------------------------------------


def test_loss_matches_a_hand_computation() -> None:
    # teacher [ln 3, 0] at T=1 -> p = [3/4, 1/4]; student [0, 0] -> q = [1/2, 1/2]
    # KL = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.1308121...
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    student = torch.zeros(1, 2, dtype=torch.float64)
    teacher = torch.tensor([[math.log(3), 0.0]], dtype=torch.float64)
    assert float(DistillationLoss(1.0, alpha=1.0)(student, teacher)) == pytest.approx(kl, rel=1e-12)
    # the same softened distributions at T=2 (teacher logits doubled): the loss is T^2 = 4 times larger
    doubled = torch.tensor([[2 * math.log(3), 0.0]], dtype=torch.float64)
    assert float(DistillationLoss(2.0, alpha=1.0)(student, doubled)) == pytest.approx(4 * kl, rel=1e-12)
    # alpha mixes in the cross-entropy with the unsoftened logits: CE([0, 0], label 0) = ln 2
    mixed = DistillationLoss(2.0, alpha=0.25)(student, doubled, torch.tensor([0]))
    assert float(mixed) == pytest.approx(0.25 * 4 * kl + 0.75 * math.log(2), rel=1e-12)


@FAST
@given(
    data=st.data(),
    batch=st.integers(1, 5),
    classes=st.integers(2, 7),
    t=st.floats(0.25, 20.0),
    alpha=st.floats(0.0, 1.0),
)
def test_loss_matches_the_formula(data: st.DataObject, batch: int, classes: int, t: float, alpha: float) -> None:
    logits = hnp.arrays(np.float64, (batch, classes), elements=st.floats(-30, 30))
    student, teacher = data.draw(logits), data.draw(logits)
    labels = data.draw(hnp.arrays(np.int64, batch, elements=st.integers(0, classes - 1)))
    got = DistillationLoss(t, alpha)(torch.from_numpy(student), torch.from_numpy(teacher), torch.from_numpy(labels))
    assert float(got) == pytest.approx(reference_loss(student, teacher, labels, t, alpha), rel=1e-9, abs=1e-9)


def test_batchmean_is_per_sample_not_per_element() -> None:
    student, teacher = torch.randn(1, 10), torch.randn(1, 10)
    one = DistillationLoss(3.0, alpha=1.0)(student, teacher)
    many = DistillationLoss(3.0, alpha=1.0)(student.repeat(8, 1), teacher.repeat(8, 1))
    assert float(many) == pytest.approx(float(one), rel=1e-5)


def test_t_squared_keeps_the_gradient_magnitude_comparable_across_temperatures() -> None:
    generator = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(64, 10, generator=generator), torch.randn(64, 10, generator=generator) * 3
    scaled, unscaled = [], []
    for t in (2.0, 4.0, 8.0, 16.0):
        logits = student.clone().requires_grad_(True)
        soft = DistillationLoss(t, alpha=1.0).terms(logits, teacher).soft
        (grad,) = torch.autograd.grad(soft, logits)
        scaled.append(float(grad.norm()))
        unscaled.append(float(grad.norm()) / t**2)  # what KL alone (without T^2) would give
    assert max(scaled) / min(scaled) < 1.6  # comparable: the distillation term keeps its weight as T changes
    assert max(unscaled) / min(unscaled) > 40  # without the factor it would fade by ~T^2


def test_unlabelled_rows_get_only_the_distillation_term() -> None:
    student, teacher = torch.randn(4, 5), torch.randn(4, 5)
    loss = DistillationLoss(2.0, alpha=0.6)
    labels = torch.tensor([1, IGNORE_INDEX, 3, IGNORE_INDEX])
    soft, hard = loss.terms(student, teacher, labels)
    expected_ce = nn.functional.cross_entropy(student[[0, 2]], labels[[0, 2]])
    assert float(hard) == pytest.approx(float(expected_ce), rel=1e-6)
    none = torch.full((4,), IGNORE_INDEX)
    logits = student.clone().requires_grad_(True)
    total = loss(logits, teacher, none)
    assert float(total.detach()) == pytest.approx(0.6 * float(soft), rel=1e-6)
    total.backward()  # still differentiable with no labelled row
    assert logits.grad is not None
    assert float(logits.grad.abs().sum()) > 0
    assert float(loss(student, teacher, None)) == pytest.approx(float(total.detach()), rel=1e-6)


def test_loss_stays_finite_for_very_confident_teachers() -> None:
    teacher = torch.tensor([[1e4, -1e4, 0.0]])
    value = DistillationLoss(1.0, alpha=1.0)(torch.tensor([[-1e4, 1e4, 0.0]]), teacher)
    assert math.isfinite(float(value))
    assert float(value) > 1e3


def test_different_output_sizes_are_refused_with_both_sizes() -> None:
    with pytest.raises(InputError, match=r"student has 10 outputs and the teacher 12"):
        DistillationLoss()(torch.randn(2, 10), torch.randn(2, 12))
    with pytest.raises(InputError, match="batch"):
        DistillationLoss()(torch.randn(2, 10), torch.randn(3, 10))
    with pytest.raises(InputError, match=r"\[batch, classes\]"):
        DistillationLoss()(torch.randn(2, 10, 1), torch.randn(2, 10))


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, float("nan"), float("inf")])
def test_temperature_must_be_positive(bad: float) -> None:
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        DistillationLoss(bad)
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        DistillationLoss(4.0)(torch.randn(2, 3), torch.randn(2, 3), temperature=bad)
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        TemperatureSchedule.linear(5.0, bad)
    with pytest.raises(ConfigError):
        soft_targets(torch.randn(2, 3), bad)


def test_alpha_outside_zero_one_is_refused() -> None:
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match=r"alpha must be in \[0, 1\]"):
            DistillationLoss(4.0, bad)


# --- several teachers -------------------------------------------------------------------------


@FAST
@given(
    data=st.data(),
    teachers=st.integers(1, 4),
    t=st.floats(0.5, 10.0),
    weights=st.lists(st.floats(0.1, 5.0), min_size=4, max_size=4),
)
def test_multi_teacher_targets_are_the_weighted_average_of_softened_distributions(
    data: st.DataObject, teachers: int, t: float, weights: list[float]
) -> None:
    logits = [data.draw(hnp.arrays(np.float64, (3, 5), elements=st.floats(-20, 20))) for _ in range(teachers)]
    w = np.array(weights[:teachers]) / sum(weights[:teachers])
    expected = sum(wi * np.exp(np_log_softmax(z / t)) for wi, z in zip(w, logits, strict=True))
    got = soft_targets([torch.from_numpy(z) for z in logits], t, weights[:teachers]).exp().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-9)


def test_multi_teacher_loss_uses_the_average_not_each_teacher() -> None:
    a, b = torch.tensor([[4.0, 0.0]]), torch.tensor([[0.0, 4.0]])
    student = torch.zeros(1, 2)  # exactly the average of two mirror-image teachers
    assert float(DistillationLoss(1.0, alpha=1.0)(student, [a, b])) == pytest.approx(0.0, abs=1e-7)
    weighted = DistillationLoss(1.0, alpha=1.0, teacher_weights=[3, 1])(student, [a, b])
    assert float(weighted) > 0.01  # 3:1 no longer averages to uniform
    assert float(DistillationLoss(1.0, alpha=1.0)(student, [a, a])) == pytest.approx(
        float(DistillationLoss(1.0, alpha=1.0)(student, a)), rel=1e-6
    )


def test_multi_teacher_errors() -> None:
    with pytest.raises(InputError, match=r"teacher 1 gives logits of shape \[2, 4\] and teacher 0 \[2, 3\]"):
        soft_targets([torch.randn(2, 3), torch.randn(2, 4)], 2.0)
    with pytest.raises(InputError, match="teacher 1"):
        DistillationLoss()(torch.randn(2, 3), [torch.randn(2, 3), torch.randn(2, 4)])
    with pytest.raises(ConfigError, match="2 teacher weights for 3 teachers"):
        soft_targets([torch.randn(2, 3)] * 3, 2.0, [1, 1])
    with pytest.raises(ConfigError, match=">= 0"):
        DistillationLoss(teacher_weights=[1, -1])
    with pytest.raises(InputError, match="no teacher"):
        soft_targets([], 2.0)


# --- schedules --------------------------------------------------------------------------------


def test_schedules_hit_their_ends_and_midpoints() -> None:
    constant, linear, cosine = (
        TemperatureSchedule.constant(4),
        TemperatureSchedule.linear(5, 1),
        TemperatureSchedule.cosine(5, 1),
    )
    assert [constant.at(p) for p in (0, 0.5, 1)] == [4, 4, 4]
    assert [linear.at(p) for p in (0, 0.25, 0.5, 1)] == pytest.approx([5, 4, 3, 1])
    assert [cosine.at(p) for p in (0, 0.5, 1)] == pytest.approx([5, 3, 1])
    assert cosine.at(0.25) == pytest.approx(3 + 2 * math.cos(math.pi / 4))  # slower than linear at first
    assert linear.at_step(0, 11) == 5
    assert linear.at_step(10, 11) == 1
    assert linear.at_step(5, 11) == pytest.approx(3)
    assert linear.at(-1) == 5
    assert linear.at(2) == 1
    assert TemperatureSchedule.linear(1, 5).at(0.5) == pytest.approx(3)  # warming up works too
    assert linear.describe() == "T 5->1 (linear)"
    assert constant.describe() == "T=4"


@FAST
@given(start=st.floats(0.1, 50), end=st.floats(0.1, 50), p=st.floats(0, 1), q=st.floats(0, 1))
def test_schedules_are_monotone_and_stay_between_their_ends(start: float, end: float, p: float, q: float) -> None:
    lo, hi = min(start, end), max(start, end)
    for schedule in (TemperatureSchedule.linear(start, end), TemperatureSchedule.cosine(start, end)):
        a, b = schedule.at(min(p, q)), schedule.at(max(p, q))
        assert lo - 1e-9 <= a <= hi + 1e-9
        assert (b - a) * (end - start) >= -1e-9  # moves only towards the end temperature


def test_schedule_errors() -> None:
    with pytest.raises(ConfigError, match="choose one of: constant, linear, cosine"):
        TemperatureSchedule("exponential", 5, 1)
    with pytest.raises(ConfigError, match="one temperature"):
        TemperatureSchedule("constant", 5, 1)
    with pytest.raises(ConfigError, match="total_steps"):
        TemperatureSchedule.constant(2).at_step(0, 0)


# --- feature distillation ---------------------------------------------------------------------


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_feature_taps_capture_and_are_removed_after_use() -> None:
    model = Tiny()
    with FeatureTaps(model, ["features.2", "head.2"]) as taps:
        assert hook_count(model) == 2
        model(torch.randn(3, 1, 8, 8))
        assert taps.tensor("features.2").shape == (3, 8, 4, 4)
        assert taps.tensor("head.2").shape == (3, 16)
    assert hook_count(model) == 0
    assert not taps.outputs
    model(torch.randn(1, 1, 8, 8))
    assert not taps.outputs  # nothing captured any more


def test_feature_hooks_are_removed_after_an_error_too() -> None:
    student, teacher = Tiny(width=4), Tiny(width=8)

    def fail_inside() -> None:
        with FeatureDistillation(student, teacher, {"features.2": "features.2"}, torch.randn(2, 1, 8, 8)):
            assert hook_count(student) == 1
            assert hook_count(teacher) == 1
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_inside()
    assert hook_count(student) == 0
    assert hook_count(teacher) == 0
    with pytest.raises(ConfigError):  # a bad second name: the hooks of the good first one are removed too
        FeatureDistillation(student, teacher, {"features.2": "features.2", "head.2": "nope"}, torch.randn(2, 1, 8, 8))
    assert hook_count(student) == 0
    assert hook_count(teacher) == 0


def test_unknown_layer_names_list_close_matches() -> None:
    with pytest.raises(ConfigError, match=r"the student has no layer named 'feature.2'; did you mean: features.2"):
        FeatureTaps(Tiny(), ["feature.2"], "student")
    with pytest.raises(ConfigError, match=r"no layer named 'zzz'; its layers: features, features.0"):
        FeatureTaps(Tiny(), ["zzz"])
    assert issubclass(ConfigError, EdgerunError)


def test_projection_matches_widths_and_the_loss_is_what_it_says() -> None:
    student, teacher = Tiny(width=4), Tiny(width=8)
    sample = torch.randn(5, 1, 8, 8)
    pairs = {"features.2": "features.2", "head.2": "head.2"}
    with FeatureDistillation(student, teacher, pairs, sample, loss="mse") as hints:
        conv, same = hints.projections
        assert isinstance(conv, nn.Conv2d)
        assert (conv.in_channels, conv.out_channels) == (4, 8)
        assert isinstance(same, nn.Identity)  # 16 wide on both sides
        s_feats, t_feats = FeatureTaps(student, list(pairs)), FeatureTaps(teacher, list(pairs.values()))
        student(sample), teacher(sample)
        expected = (
            nn.functional.mse_loss(conv(s_feats.tensor("features.2")), t_feats.tensor("features.2"))
            + nn.functional.mse_loss(s_feats.tensor("head.2"), t_feats.tensor("head.2"))
        ) / 2
        s_feats.close()
        t_feats.close()
        assert float(hints.loss().detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
        with pytest.raises(InputError, match="has not run"):
            hints.loss()  # outputs are cleared after each loss


def test_cosine_feature_loss_is_zero_for_the_same_features() -> None:
    model = Tiny()
    with FeatureDistillation(model, model, {"head.2": "head.2"}, torch.randn(2, 1, 8, 8), loss="cosine") as hints:
        model(torch.randn(4, 1, 8, 8))
        assert float(hints.loss().detach()) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ConfigError, match="choose one of: mse, cosine"):
        FeatureDistillation(model, model, {"head.2": "head.2"}, torch.randn(2, 1, 8, 8), loss="l1")


def test_feature_layers_of_different_rank_are_refused() -> None:
    with pytest.raises(ConfigError, match="same rank"):
        FeatureDistillation(Tiny(), Tiny(), {"head.2": "features.2"}, torch.randn(2, 1, 8, 8))


# --- export -----------------------------------------------------------------------------------


def test_export_matches_pytorch_has_a_dynamic_batch_and_a_card(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    torch.manual_seed(0)
    model = Tiny().train()
    result = export_onnx(
        model, torch.randn(1, 1, 8, 8), tmp_path / "student.onnx", input_names=["image"], card={"teacher": "t"}
    )
    assert model.training  # the caller's mode is restored
    assert result.max_abs_error <= 1e-5
    assert result.checked_batches == (1, 2)
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"
    assert session.get_outputs()[0].shape[0] == "batch"
    x = torch.randn(7, 1, 8, 8)
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    np.testing.assert_allclose(session.run(None, {"image": x.numpy()})[0], expected, rtol=0, atol=1e-5)
    card = json.loads(result.card_path.read_text())
    assert result.card_path.name == "student.card.json"
    assert card["teacher"] == "t"
    assert card["export"]["parameters"] == sum(p.numel() for p in model.parameters()) == result.parameters
    assert card["export"]["onnx_vs_torch_max_abs_error"] == result.max_abs_error
    assert card["export"]["inputs"] == {"image": ["batch", 1, 8, 8]}


class DictOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.linear(x), "features": x}


def test_export_refuses_non_tensor_outputs_and_writes_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "bad.onnx"
    with pytest.raises(ConversionError, match=r"DictOut.forward returns a dict with keys \['logits', 'features'\]"):
        export_onnx(DictOut(), torch.randn(1, 4), target)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match=r"2 output name\(s\) \['a', 'b'\] for 1 output\(s\)"):
        export_onnx(nn.Linear(4, 2), torch.randn(1, 4), target, output_names=["a", "b"])
    assert list(tmp_path.iterdir()) == []


# --- the training loop ------------------------------------------------------------------------


def blobs(n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three separable classes drawn as 8x8 images (a bright row per class)."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.rand(n, 1, 8, 8, generator=generator) * 0.3
    x[torch.arange(n), 0, y * 3, :] += 1.0
    return x, y


def test_fit_student_learns_from_a_teacher_on_unlabelled_rows_and_removes_its_hooks() -> None:
    x, y = blobs()
    torch.manual_seed(0)
    teacher = Tiny(classes=3)
    fit_student(teacher, x, y, steps=60, seed=0)
    unlabelled = torch.full_like(y, IGNORE_INDEX)  # the student sees no label at all
    torch.manual_seed(1)
    student = Tiny(width=4, classes=3)
    history = fit_student(
        student,
        x,
        unlabelled,
        teacher=teacher,
        steps=60,
        temperature=TemperatureSchedule.linear(5, 1),
        features={"features.2": "features.2"},
    )
    x_test, y_test = blobs(seed=1)
    with torch.no_grad():
        assert float((student(x_test).argmax(1) == y_test).float().mean()) > 0.9
    assert not student.training
    assert history.temperature[0] == 5
    assert history.temperature[-1] == 1
    assert len(history.loss) == 60
    assert hook_count(student) == 0
    assert hook_count(teacher) == 0


def test_fit_student_is_deterministic_for_a_seed() -> None:
    x, y = blobs()
    weights = []
    for _ in range(2):
        torch.manual_seed(3)
        model = Tiny(classes=3)
        fit_student(model, x, y, steps=5, seed=7, augment=lambda b, g: b + 0.01 * torch.randn(b.shape, generator=g))
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_fit_student_refuses_bad_setups_before_training() -> None:
    x, y = blobs(12)
    with pytest.raises(InputError, match="student has 3 outputs and the teacher 10"):
        fit_student(Tiny(classes=3), x, y, teacher=Tiny(classes=10), steps=1)
    with pytest.raises(ConfigError, match="none were given"):
        fit_student(Tiny(classes=3), x, steps=1)
    with pytest.raises(InputError, match="labels of shape"):
        fit_student(Tiny(classes=3), x, y[:5], steps=1)
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        fit_student(Tiny(classes=3), x, y, teacher=Tiny(classes=3), temperature=0, steps=1)
