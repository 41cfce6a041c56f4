"""Frozen-feature evaluation on a labelled image split: linear probe and k-NN accuracy.

The probe is scikit-learn's ``LogisticRegression`` on standardised features; k-NN is a cosine-similarity
vote (scikit-learn's ``KNeighborsClassifier``, distance-weighted).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


@dataclass
class ProbeResult:
    """Accuracies in [0, 1] on the validation split, and the sizes they were measured on."""

    linear_accuracy: float
    knn_accuracy: float
    train_size: int
    val_size: int
    classes: int

    def as_scalars(self, prefix: str = "probe") -> dict[str, float]:
        return {f"{prefix}/linear_accuracy": self.linear_accuracy, f"{prefix}/knn_accuracy": self.knn_accuracy}


@torch.no_grad()
def embed_dataset(encoder: nn.Module, dataset: Dataset, batch_size: int = 128, device: str | torch.device = "cpu",
                  workers: int = 0, progress: bool = False, desc: str = "embed") -> tuple[np.ndarray, np.ndarray]:
    """Run ``encoder`` over ``dataset`` of ``(image (3, H, W), label)`` → features ``(N, D)`` float32, labels ``(N,)``."""
    from tqdm.auto import tqdm

    was_training = encoder.training
    encoder.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    feats, labels = [], []
    for images, y in tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
        feats.append(encoder(images.to(device)).float().cpu())
        labels.append(torch.as_tensor(y))
    encoder.train(was_training)
    return torch.cat(feats).numpy(), torch.cat(labels).numpy()


def linear_probe_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                          c: float = 1.0, max_iter: int = 2000) -> float:
    """Multinomial logistic regression on standardised features; accuracy on the validation split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
    model.fit(x_train, y_train)
    return float(model.score(x_val, y_val))


def knn_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, k: int = 20) -> float:
    """Distance-weighted k-NN vote with cosine distance; accuracy on the validation split."""
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=min(k, len(x_train)), metric="cosine", weights="distance")
    knn.fit(x_train, y_train)
    return float(knn.score(x_val, y_val))


def probe_encoder(encoder: nn.Module, train_set: Dataset, val_set: Dataset, k: int = 20, batch_size: int = 128,
                  device: str | torch.device = "cpu", progress: bool = False) -> ProbeResult:
    """Embed both splits with the frozen ``encoder`` and report linear-probe and k-NN accuracy."""
    x_tr, y_tr = embed_dataset(encoder, train_set, batch_size, device, progress=progress, desc="embed train")
    x_va, y_va = embed_dataset(encoder, val_set, batch_size, device, progress=progress, desc="embed val")
    return ProbeResult(linear_probe_accuracy(x_tr, y_tr, x_va, y_va), knn_accuracy(x_tr, y_tr, x_va, y_va, k),
                       len(y_tr), len(y_va), int(len(np.unique(y_tr))))


class ImageProbeEvaluator:
    """For :class:`~torchwm.training.Trainer`: linear-probe and k-NN accuracy of ``model.backbone``.

    Trains the probes on ``train_set`` and scores them on ``val_set`` (both ``(image, label)``, with a
    deterministic transform) every ``eval_every`` steps and at the end of training.
    """

    def __init__(self, train_set: Dataset, val_set: Dataset, k: int = 20, device: str | torch.device = "cpu",
                 batch_size: int = 128) -> None:
        self.train_set, self.val_set, self.k, self.device, self.batch_size = train_set, val_set, k, device, batch_size

    def __call__(self, model: nn.Module, step: int) -> dict[str, float]:
        encoder = getattr(model, "backbone", model)
        return probe_encoder(encoder, self.train_set, self.val_set, self.k, self.batch_size, self.device).as_scalars()
