"""The schedule simulation of benchmarks/label_ray.py on cases small enough to work out by hand: the static
split (`j % N`) against a free host taking the next piece, with and without a preempted host."""

import importlib.util
import os
import random

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _module():
  spec = importlib.util.spec_from_file_location("label_ray", os.path.join(REPO, "benchmarks", "label_ray.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_a_long_piece_holds_back_its_static_host_but_not_the_dynamic_schedule():
  sim = _module()
  costs = [4.0] + [1.0] * 8  # host 0 of 2 gets pieces 0, 2, 4, 6, 8 = 8; host 1 gets 1, 3, 5, 7 = 4
  assert sim.static_makespan(costs, 2, {}, 0.0) == 8.0
  assert sim.dynamic_makespan(costs, 2, {}, 0.0) == 6.0  # 12 units of work over 2 hosts
  assert sim.static_makespan([2.0, 2.0], 1, {}, 0.0) == sim.dynamic_makespan([2.0, 2.0], 1, {}, 0.0) == 4.0


def test_a_preempted_piece_waits_for_its_host_under_the_static_split_only():
  sim = _module()
  costs, preempt = [2.0, 2.0, 2.0], {0: 1.0}  # host 0 lost at t=1 for 10
  assert sim.static_makespan(costs, 2, preempt, 10.0) == 15.0  # 1 + 10, then pieces 0 and 2 again
  assert sim.dynamic_makespan(costs, 2, preempt, 10.0) == 6.0  # host 1 takes the lost piece at t=2
  assert sim.static_makespan([2.0, 2.0], 1, {0: 1.0}, 5.0) == sim.dynamic_makespan([2.0, 2.0], 1, {0: 1.0}, 5.0) == 10.0


def test_piece_costs_have_mean_one_factors_and_the_table_compares_both_schedules():
  sim = _module()
  costs = sim.piece_costs(random.Random(0), 20000, 10.0, 0.5, 1.0)
  assert abs(sum(costs) / len(costs) / 5.0 - 1) < 0.05 and max(costs) > 5 * 5.0  # mean kept, heavy tail
  args = sim._parse(["--simulate_only", "--hours=300", "--pieces=64", "--hosts=8", "--seeds=2"])
  result = sim.simulate(args, 0.5)
  assert len(result["rows"]) == 12
  for row in result["rows"]:
    assert row["ideal_hours"] <= row["dynamic_hours"] <= row["static_hours"] * 1.05
