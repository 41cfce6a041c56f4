"""Agents: orchestration of data, model, training and planning."""

from torchwm.agents.jepa import JEPAAgent

__all__ = ["JEPAAgent"]
