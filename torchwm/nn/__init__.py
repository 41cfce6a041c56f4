"""Neural network parts of the world model: spatial encoder, temporal encoder, predictor."""

from torchwm.nn.encoders import SpatialEncoder, build_spatial_encoder
from torchwm.nn.predictor import Predictor
from torchwm.nn.temporal import TemporalEncoder

__all__ = ["Predictor", "SpatialEncoder", "TemporalEncoder", "build_spatial_encoder"]
