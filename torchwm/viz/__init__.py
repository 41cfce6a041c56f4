"""Figures for TensorBoard and files: mask overlays (I-JEPA)."""
