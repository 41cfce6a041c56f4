"""Run directories (torchwm.runs): layout, the metrics log, and what saved models and checkpoints carry."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from torchwm.nn.encoders import SpatialEncoder
from torchwm.runs import (RunDir, checkpoint_extras, encoder_prefix, encoder_weights, find_model_file, load_state,
                          save_model)


class _Holder(nn.Module):
    """A model with its encoder two levels down, as an EMA target encoder sits."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(2, 2)
        self.target = nn.Module()
        self.target.module = SpatialEncoder.conv(16, 8, width=4)

    @property
    def backbone(self) -> SpatialEncoder:
        return self.target.module


def test_layout_and_metrics_log(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.config == tmp_path / "run" / "config.yaml" and run.model.name == "model.pt"
    assert run.checkpoint == tmp_path / "run" / "checkpoints" / "last.pt"
    assert run.read_metrics() == [] and run.final_metrics() == {} and not run.has_training_state()
    for step in (1, 2, 3):
        run.append_metrics({"step": step, "loss": 1.0 / step})
    run.append_metrics({"step": 3, "eval": 0.5})
    assert [r["step"] for r in run.read_metrics()] == [1, 2, 3, 3]
    run.truncate_metrics(2)  # what a run interrupted after step 2's checkpoint logged later is dropped
    assert run.read_metrics() == [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}]
    run.append_metrics({"step": 3, "eval": 0.25})
    final = run.finish_metrics(steps=3)
    assert final == {"step": 3, "loss": 0.5, "eval": 0.25, "steps": 3}  # each key's last value
    assert json.loads(run.metrics_file.read_text()) == final == run.final_metrics()


def test_saved_model_and_checkpoint_both_yield_the_encoder(tmp_path):
    torch.manual_seed(0)
    model = _Holder()
    assert encoder_prefix(model, model.backbone) == "target.module."
    with pytest.raises(ValueError, match="not a submodule of _Holder"):
        encoder_prefix(model, SpatialEncoder.conv(16, 8, width=4))
    run = RunDir(tmp_path / "run")
    x = torch.rand(2, 3, 16, 16)
    expected = model.backbone(x)

    run.checkpoint.parent.mkdir(parents=True)
    torch.save({"step": 1, "model": model.state_dict(), **checkpoint_extras({"seed": 0}, model, model.backbone)},
               run.checkpoint)
    assert find_model_file(run.path) == run.checkpoint  # no model.pt yet: the checkpoint
    save_model(run.model, config={"seed": 0}, job="test", model=model, encoder=model.backbone)
    assert find_model_file(run.path) == run.model  # a finished run: model.pt first
    for source in (run.model, run.checkpoint):
        file, state = load_state(source)
        assert file == source and state["config"] == {"seed": 0}
        spec, weights = encoder_weights(state, file)
        encoder = SpatialEncoder.from_spec(spec)
        encoder.load_state_dict(weights)
        torch.testing.assert_close(encoder(x), expected, atol=0, rtol=0)


def test_files_that_are_not_runs_are_named(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pt: truncated, or not a torchwm model or checkpoint"):
        load_state(tmp_path / "junk.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="list.pt: not a torchwm model or checkpoint"):
        load_state(tmp_path / "list.pt")
    with pytest.raises(FileNotFoundError, match="no such file or run directory"):
        find_model_file(tmp_path / "absent")
