"""Train the bundled digits teacher and its distilled student, export both to ONNX.

Data: scikit-learn's ``load_digits`` (1,797 8x8 handwritten digits, UCI, CC BY 4.0), split
80/20 stratified with a fixed seed. The teacher is a 3-conv CNN trained on hard labels; the
student (about 1/9 of the teacher's parameters) is trained with knowledge distillation
(Hinton et al.: T^2 * KL on temperature-softened outputs plus cross-entropy) from the
teacher, and a same-sized student trained without the teacher is measured for comparison.

Writes ``edgerun/models/digits-{teacher,student}/model.onnx``, their measured figures into
each ``card.json``, the held-out test split to ``digits-student/digits-test.npz`` (the
tests re-measure the cards' accuracy from it, so the figures cannot drift from the files),
and 256 training images to ``digits-student/digits-calib.npz`` for INT8 calibration.

Needs the maintainer tools (not edgerun's dependencies):
    pip install torch==2.13.0 scikit-learn
    python scripts/make_digits_models.py
Deterministic for a given torch version on CPU (fixed seeds, deterministic algorithms, one thread).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn import functional as F  # noqa: N812

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "edgerun" / "models"
SEED = 0
TEMPERATURE = 4.0
ALPHA = 0.7  # weight of the distillation term
EPOCHS = 60
BATCH = 64
SWEEP_SEEDS = (1, 2, 3, 4, 5)
CALIBRATION_SAMPLES = 256


class Teacher(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1),
            nn.BatchNorm2d(128),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(128 * 2 * 2, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Student(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * 2 * 2, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]  # N x 1 x 8 x 8 in [0, 1]
    index = np.arange(len(images))
    train_idx, test_idx = train_test_split(index, test_size=0.2, stratify=digits.target, random_state=SEED)
    return (
        images[train_idx],
        digits.target[train_idx],
        images[test_idx],
        digits.target[test_idx],
        test_idx,
        train_idx,
    )


def shift_augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random shifts of up to one pixel: the digits are small, so this is the useful augmentation."""
    padded = F.pad(x, (1, 1, 1, 1))
    dy, dx = torch.randint(0, 3, (2,), generator=generator).tolist()
    return padded[:, :, dy : dy + 8, dx : dx + 8]


def train(
    model: nn.Module, x: np.ndarray, y: np.ndarray, teacher: nn.Module | None, distill: bool, seed: int = SEED
) -> None:
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, EPOCHS)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y).long()
    for _ in range(EPOCHS):
        model.train()
        order = torch.randperm(len(xs), generator=generator)
        for start in range(0, len(xs), BATCH):
            idx = order[start : start + BATCH]
            batch = shift_augment(xs[idx], generator)
            logits = model(batch)
            loss = F.cross_entropy(logits, ys[idx])
            if distill:
                assert teacher is not None
                with torch.no_grad():
                    soft = F.log_softmax(teacher(batch) / TEMPERATURE, dim=1)
                kd = F.kl_div(F.log_softmax(logits / TEMPERATURE, dim=1), soft, log_target=True, reduction="batchmean")
                loss = ALPHA * TEMPERATURE**2 * kd + (1 - ALPHA) * loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
    model.eval()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def export(model: nn.Module, folder: Path, x_test: np.ndarray, y_test: np.ndarray) -> dict[str, object]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    torch.onnx.export(
        model,
        (torch.from_numpy(x_test[:1]),),
        str(path),
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(None, {"image": x_test})[0]
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(x_test)).numpy()
    max_abs = float(np.abs(onnx_logits - torch_logits).max())
    if max_abs > 1e-4:
        sys.exit(f"{path}: ONNX and PyTorch outputs differ by {max_abs}")
    correct = int((onnx_logits.argmax(1) == y_test).sum())
    return {
        "params": int(sum(p.numel() for p in model.parameters())),
        "bytes": path.stat().st_size,
        "onnx_vs_torch_max_abs_error": max_abs,
        "correct": correct,
        "accuracy": correct / len(y_test),
    }


def update_card(folder: Path, size: dict[str, object], accuracy: dict[str, object]) -> None:
    card_path = folder / "card.json"
    card = json.loads(card_path.read_text())
    card["size"] = size
    card["accuracy"] = accuracy
    card_path.write_text(json.dumps(card, indent=2) + "\n")


def write_calibration_split(x_train: np.ndarray, y_train: np.ndarray, train_idx: np.ndarray) -> None:
    """256 training images (never test images) that INT8 calibration of the digits models uses."""
    chosen = np.sort(np.random.default_rng(SEED).choice(len(x_train), size=CALIBRATION_SAMPLES, replace=False))
    np.savez_compressed(
        MODELS / "digits-student" / "digits-calib.npz",
        images=x_train[chosen],
        labels=y_train[chosen].astype(np.int64),
        index=train_idx[chosen].astype(np.int64),
    )


def main() -> None:
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    x_train, y_train, x_test, y_test, test_idx, train_idx = data()
    write_calibration_split(x_train, y_train, train_idx)

    teacher = Teacher()
    train(teacher, x_train, y_train, None, distill=False)
    torch.manual_seed(SEED)
    student = Student()
    train(student, x_train, y_train, teacher, distill=True)
    torch.manual_seed(SEED)
    alone = Student()
    train(alone, x_train, y_train, None, distill=False)
    # One split of 360 images moves 0.28 points per image: compare the two recipes over seeds.
    sweep: dict[str, list[float]] = {"distilled": [], "alone": []}
    for seed in SWEEP_SEEDS:
        for recipe, distill in (("distilled", True), ("alone", False)):
            torch.manual_seed(seed)
            model = Student()
            train(model, x_train, y_train, teacher, distill=distill, seed=seed)
            sweep[recipe].append(accuracy(model, x_test, y_test))

    t = export(teacher, MODELS / "digits-teacher", x_test, y_test)
    s = export(student, MODELS / "digits-student", x_test, y_test)
    np.savez_compressed(
        MODELS / "digits-student" / "digits-test.npz",
        images=x_test,
        labels=y_test.astype(np.int64),
        index=test_idx.astype(np.int64),
    )
    common = {
        "metric": "top-1 accuracy",
        "dataset": "scikit-learn load_digits (UCI optical digits, 8x8)",
        "split": f"held-out 20% stratified test split, random_state={SEED}",
        "samples": len(y_test),
        "data_file": "digits-student/digits-test.npz",
        "command": "python scripts/make_digits_models.py (trains); pytest tests/test_models.py (re-measures)",
    }
    update_card(
        MODELS / "digits-teacher",
        {"params": t["params"], "bytes": t["bytes"]},
        {**common, "value": t["accuracy"], "correct": t["correct"]},
    )
    update_card(
        MODELS / "digits-student",
        {
            "params": s["params"],
            "bytes": s["bytes"],
            "teacher_params": t["params"],
            "params_ratio_to_teacher": round(int(s["params"]) / int(t["params"]), 4),  # type: ignore[call-overload]
        },
        {
            **common,
            "value": s["accuracy"],
            "correct": s["correct"],
            "teacher_value": t["accuracy"],
            "retention_vs_teacher": round(float(s["accuracy"]) / float(t["accuracy"]), 4),  # type: ignore[arg-type]
            "same_student_without_distillation": accuracy(alone, x_test, y_test),
            "seed_sweep": {
                "seeds": list(SWEEP_SEEDS),
                "distilled_mean": round(float(np.mean(sweep["distilled"])), 4),
                "distilled_min": round(float(np.min(sweep["distilled"])), 4),
                "without_distillation_mean": round(float(np.mean(sweep["alone"])), 4),
                "without_distillation_min": round(float(np.min(sweep["alone"])), 4),
            },
        },
    )
    print(f"teacher: {t}\nstudent: {s}\nstudent without distillation: {accuracy(alone, x_test, y_test):.4f}")
    print(f"seed sweep {SWEEP_SEEDS}: {sweep}")


if __name__ == "__main__":
    main()
