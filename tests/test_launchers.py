"""The launchers take jax from pyproject.toml's range: an accelerator only adds its plugin at that version."""

import glob
import os
import re
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_no_launcher_pins_jax_itself():
  """A jax range written into a launcher drifts from the tested pins (it said <0.11 while CI tested 0.12)."""
  pinned = []
  for path in glob.glob(os.path.join(REPO, "launch", "*")):
    with open(path) as f:
      for n, line in enumerate(f, 1):
        unquoted = line.replace("'", "").replace('"', "")
        if re.search(r"jax(\[[a-z0-9-]+\])?\s*[<>=~]=?\s*\d", unquoted):
          pinned.append(f"{os.path.relpath(path, REPO)}:{n}: {line.strip()}")
  assert not pinned, "\n".join(pinned)
  for launcher, accelerator in (("tpu_pod.sh", "tpu"), ("slurm_gpu.sbatch", "cuda12")):
    with open(os.path.join(REPO, "launch", launcher)) as f:
      assert f"ACCELERATOR={accelerator} bash launch/setup_venv.sh" in f.read(), launcher


def test_setup_refuses_an_unknown_accelerator_before_installing_anything(tmp_path):
  venv = tmp_path / "venv"
  # An interpreter that does not exist: should the check ever move after the install, this fails at once.
  out = subprocess.run(["bash", os.path.join(REPO, "launch", "setup_venv.sh"), str(venv)],
                       env=dict(os.environ, ACCELERATOR="rocm", PYTHON=str(tmp_path / "no-python")),
                       capture_output=True, text=True)
  assert out.returncode == 2
  assert "ACCELERATOR=rocm: expected tpu, cuda12 or cuda13" in out.stderr
  assert not venv.exists()


def test_kubernetes_manifests_run_lanser_label_with_real_flags_and_config_keys():
  """The RayJob, RayCluster and Indexed Job manifests (docs/ray.md) name flags and config keys that exist."""
  import shlex

  import yaml

  from lanser_jax import config_lib
  from lanser_jax.stages import main

  commands = {}
  for name in ("ray_label_gpu.yaml", "ray_label_tpu.yaml", "k8s_label_indexed_job.yaml"):
    with open(os.path.join(REPO, "launch", name)) as f:
      text = f.read()
    spec = yaml.safe_load(text)
    if spec["kind"] == "RayJob":
      commands[name] = shlex.split(spec["spec"]["entrypoint"])
    elif spec["kind"] == "Job":
      assert spec["spec"]["completionMode"] == "Indexed"
      [container] = spec["spec"]["template"]["spec"]["containers"]
      assert {"name": "JOB_COMPLETIONS", "value": str(spec["spec"]["completions"])} in container["env"]
      commands[name] = container["command"]
    else:  # a RayCluster: the driver is submitted with the `ray job submit` line of its comment
      submit = re.search(r"ray job submit .*? -- (lanser-label .*?)\n#\n", text, re.S).group(1)
      commands[name] = shlex.split(submit.replace("\\\n#", " "))
  for name, argv in commands.items():
    assert argv[0] == "lanser-label", name
    flags = dict(a[2:].split("=", 1) for a in argv[1:])
    config = config_lib.load_experiment(os.path.join(REPO, flags.pop("config")))
    for key, value in flags.items():
      if key.startswith("config."):
        config_lib.set_override(config, key[len("config."):], yaml.safe_load(value))  # a missing key raises
      else:
        assert key in main.FLAGS, f"{name}: --{key} is not a lanser-label flag"
    assert (flags.get("runner") == "ray") == name.startswith("ray_"), name
