"""log_run_summary: hyperparameters as a text table and in the HParams tab, final metrics once, no scalar copies."""

from collections import Counter

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from torch.utils.tensorboard import SummaryWriter

from torchwm.viz.summary import log_run_summary

CONFIG = {"learning_rate": 3e-4, "planning": {"samples": 64, "horizon": 5}, "model": {"encoder": "vit"}}


def _events(run_dir) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def _text(acc: EventAccumulator, tag: str) -> str:
    return acc.Tensors(f"{tag}/text_summary")[-1].tensor_proto.string_val[0].decode()


def test_final_metrics_are_not_logged_twice(tmp_path):
    with SummaryWriter(str(tmp_path)) as writer:  # what training logs
        for step in (1, 2, 3):
            writer.add_scalar("loss/total", 1.0 / step, step)
            writer.add_scalar("eval/probe_r2", 0.2 * step, step)
    metrics = {"step": 3, "loss/total": 1 / 3, "eval/probe_r2": 0.6, "steps": 3}
    log_run_summary(tmp_path, CONFIG, metrics, step=3)

    acc = _events(tmp_path)
    scalars = acc.Tags()["scalars"]
    assert sorted(scalars) == ["eval/probe_r2", "loss/total"]  # nothing added beside the training scalars
    assert [e.step for e in acc.Scalars("loss/total")] == [1, 2, 3]
    tensor_tags = acc.Tags()["tensors"]
    assert not [t for t in tensor_tags if t.startswith("hparam/")]
    assert Counter(tensor_tags).most_common(1)[0][1] == 1

    config = _text(acc, "run/config")
    assert "| `learning_rate` | 0.0003 |" in config and "| `planning.samples` | 64 |" in config
    finals = _text(acc, "run/final_metrics")
    assert finals.count("`loss/total`") == 1 and "| `eval/probe_r2` | 0.6 |" in finals and "| `steps` | 3 |" in finals

    # the HParams tab: hyperparameters, with the metrics pointing at the training scalars' tags
    exp = plugin_data_pb2.HParamsPluginData.FromString(
        acc.summary_metadata["_hparams_/experiment"].plugin_data.content).experiment
    assert sorted(m.name.tag for m in exp.metric_infos) == ["eval/probe_r2", "loss/total"]
    assert {h.name for h in exp.hparam_infos} == {"learning_rate", "planning.samples", "planning.horizon",
                                                  "model.encoder"}


def test_summary_without_training_scalars_writes_no_scalars(tmp_path):
    log_run_summary(tmp_path, CONFIG, {"loss/total": 0.5, "steps": 10}, step=10)
    acc = _events(tmp_path)
    assert acc.Tags()["scalars"] == []
    assert "| `loss/total` | 0.5 |" in _text(acc, "run/final_metrics")
