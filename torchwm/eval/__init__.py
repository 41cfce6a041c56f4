"""Evaluation: held-out latent prediction error and linear probes (goal reaching lives in planning)."""

from torchwm.eval.prediction import PredictionErrors, prediction_errors
from torchwm.eval.probes import LinearProbe, NeighbourProbe, probe_targets

__all__ = ["LinearProbe", "NeighbourProbe", "PredictionErrors", "prediction_errors", "probe_targets"]
