"""Paired comparison of two goal-reaching evaluations (`torchwm compare`)."""

import json
from math import comb

import numpy as np
import pytest

from torchwm.cli import main
from torchwm.eval.comparison import compare_goal_reaching, load_goal_reaching, sign_test_p
from torchwm.eval.goal_reaching import GoalReaching, PolicyResult, episode_seeds


def _result(success: list[bool], seed: int = 2000, env_id: str = "dmc:cartpole-swingup") -> dict:
    """A goal-reaching result as `torchwm plan` writes it, with the planner's successes given."""
    n = len(success)
    planner = PolicyResult(np.array(success), np.zeros(n), np.zeros(n), np.where(success, 5, -1))
    random = PolicyResult(np.zeros(n, dtype=bool), np.ones(n), np.ones(n), -np.ones(n, dtype=int))
    reach = GoalReaching(env_id, episode_seeds(seed, n), 50, {"planner": planner, "random": random})
    return json.loads(json.dumps(reach.to_dict()))


def _two_sided(k: int, n: int) -> float:
    """The exact two-sided binomial p at 1/2, by hand: twice the smaller tail, at most 1."""
    tail = sum(comb(n, i) for i in range(0, min(k, n - k) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def test_counts_pair_episode_by_episode():
    a = [True, True, False, False, True, False]
    b = [True, False, True, True, True, False]
    cmp = compare_goal_reaching(_result(a), _result(b), labels=("old", "new"))
    assert (cmp.episodes, cmp.both, cmp.a_only, cmp.b_only, cmp.neither) == (6, 2, 1, 2, 1)
    assert cmp.summary()["success_a"] == 3 and cmp.summary()["success_b"] == 4
    assert cmp.p_value == pytest.approx(_two_sided(1, 3)) == pytest.approx(1.0)
    table = cmp.table()
    assert "| a: old | b: new |" in table and "| 3/6 (50%) | 4/6 (67%) | 2 | 1 | 2 | 1 |" in table


def test_sign_test_matches_the_hand_computed_binomial():
    # 1 against 9 discordant episodes: 2 * (C(10,0) + C(10,1)) / 2^10 = 22 / 1024
    assert sign_test_p(1, 9) == pytest.approx(22 / 1024)
    assert sign_test_p(9, 1) == pytest.approx(22 / 1024)
    assert sign_test_p(13, 25) == pytest.approx(_two_sided(13, 38))
    assert sign_test_p(0, 0) == 1.0
    assert sign_test_p(5, 5) == pytest.approx(1.0)
    assert sign_test_p(0, 6) < 0.05 < sign_test_p(1, 5)


def test_different_episodes_are_refused():
    a, b = _result([True] * 4, seed=1000), _result([True] * 4, seed=2000)
    with pytest.raises(ValueError, match="different episodes"):
        compare_goal_reaching(a, b)
    with pytest.raises(ValueError, match="env_id"):
        compare_goal_reaching(_result([True] * 4), _result([True] * 4, env_id="dmc:reacher-easy"))
    with pytest.raises(ValueError, match="no policy 'mppi'.*planner, random"):
        compare_goal_reaching(_result([True] * 4), _result([True] * 4), policy="mppi")


def test_loading_from_a_run_or_eval_folder(tmp_path):
    run = tmp_path / "run"
    (run / "eval" / "seed-2000").mkdir(parents=True)
    (run / "eval" / "seed-2000" / "goal_reaching.json").write_text(json.dumps(_result([True, False])))
    with pytest.raises(FileNotFoundError, match="seed-2000: name one"):
        load_goal_reaching(run)
    (run / "eval" / "goal_reaching.json").write_text(json.dumps(_result([False, False])))
    assert load_goal_reaching(run)["episodes_detail"]["planner"]["success"] == [False, False]
    assert load_goal_reaching(run / "eval" / "seed-2000")["episodes_detail"]["planner"]["success"] == [True, False]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"loss": 1.0}))
    with pytest.raises(ValueError, match="not a goal-reaching result"):
        load_goal_reaching(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_goal_reaching(bad)


def test_cli_prints_the_paired_table(tmp_path, capsys):
    paths = []
    for name, success in (("a.json", [True, False, False, True]), ("b.json", [True, True, True, False])):
        paths.append(tmp_path / name)
        paths[-1].write_text(json.dumps(_result(success)))
    main(["compare", str(paths[0]), str(paths[1]), "--labels", "recipe", "variant"])
    out = capsys.readouterr().out
    assert "4 paired episodes" in out and "| 2/4 (50%) | 3/4 (75%) | 1 | 1 | 2 | 0 |" in out
    main(["compare", str(paths[0]), str(paths[1]), "--policy", "random"])
    assert "| 0/4 (0%) | 0/4 (0%) | 0 | 0 | 0 | 4 | 1 |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["compare", str(paths[0]), str(tmp_path / "missing")])
    assert "no goal-reaching result" in capsys.readouterr().err
