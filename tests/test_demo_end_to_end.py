"""Pieces of the end-to-end demo that run in seconds: stage reuse, WER, the majority baseline."""


import numpy as np

from input_pipeline import records
from lanser_jax.demo import report
from lanser_jax.demo.stage_records import Stages


def test_finished_stages_are_reused(tmp_path):
  stages = Stages(str(tmp_path))
  calls = []
  first = stages.run("a", lambda: calls.append(1) or {"x": 1})
  again = stages.run("a", lambda: calls.append(2) or {"x": 2})
  assert calls == [1] and first["x"] == again["x"] == 1
  assert set(stages.records()) == {"a"} and "wall_s" in stages.records()["a"]


def test_failed_stage_is_not_recorded(tmp_path):
  stages = Stages(str(tmp_path))
  def boom():
    raise RuntimeError("stage failed")
  try:
    stages.run("b", boom)
  except RuntimeError:
    pass
  assert "b" not in stages.records()


def test_word_error_rate():
  assert report.edit_distance("a b c".split(), "a x c d".split()) == 2
  assert report.word_error_rate(["The cat sat.", "Hello"], ["the cat sat", "hello there"]) == 1 / 4


def test_majority_baseline(tmp_path):
  mk = lambda i, label: records.Example(f"u{i}", np.ones((4, 2), np.float16), label)
  records.write_split(str(tmp_path), "train", [mk(i, l) for i, l in enumerate([0, 1, 1, 2])], 1, 2)
  records.write_split(str(tmp_path), "test", [mk(i, l) for i, l in enumerate([0, 1, 2, 2])], 1, 2)
  records.write_dataset_info(str(tmp_path), ["a", "b", "c"], {}, ["train", "test"])
  result = report.majority_baseline(str(tmp_path))
  assert result["majority_class"] == "b"
  assert result["wa"] == 0.25 and np.isclose(result["ua"], 1 / 3)
