"""Where a labelling stage ran: its model ids and compute settings, the library versions and the machine,
recorded in every piece summary of the asr and label stages and carried into the stage's and the end-to-end
summary.json, so that a reported number (a WER, a count of weak labels) says what produced it.

Why it matters: Whisper's int8 kernels are chosen per CPU instruction set, so the same int8 run gives
slightly different transcripts on two CPU models (docs/labelling_provenance.md has the measured variation);
the instruction-set flags that select those kernels are recorded with the CPU model. Nothing here reads
the clock or a path that differs between two runs on one machine, so two runs still write identical bytes.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
from typing import Any

ASR_LIBRARIES = ("faster-whisper", "ctranslate2", "numpy", "soundfile", "soxr")
LABEL_LIBRARIES = ("jax", "jaxlib", "flax", "transformers", "tokenizers", "numpy")
# Environment variables that change which kernels run (oneDNN's and MKL's ISA caps, CTranslate2's, XLA's).
KERNEL_ENV = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "CT2_FORCE_CPU_ISA", "CT2_USE_MKL",
              "MKL_ENABLE_INSTRUCTIONS", "XLA_FLAGS")
# CPU features that decide which int8/float kernels CTranslate2 (oneDNN, ruy) and XLA dispatch to.
KERNEL_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
                "avx512_bf16", "amx_int8", "amx_bf16", "asimd", "asimddp", "sve")


def library_versions(names) -> dict[str, str | None]:
  """Installed version of each distribution (None: not installed)."""
  out = {}
  for name in names:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = None
  return out


@functools.lru_cache(maxsize=None)
def machine() -> dict[str, Any]:
  """The CPU model, its kernel-relevant flags and kernel-capping environment, the core count, OS and Python."""
  cpu, flags = None, set()
  try:
    with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
      for line in f:
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model") and cpu is None:
          cpu = value.strip()
        elif key in ("flags", "Features") and not flags:
          flags = set(value.split())
  except OSError:  # not Linux: platform's answer stands
    pass
  cpu = cpu or platform.processor() or platform.machine()
  return {"cpu": cpu, "cpu_flags": [f for f in KERNEL_FLAGS if f in flags],
          "kernel_env": {k: os.environ[k] for k in KERNEL_ENV if k in os.environ}, "cpu_count": os.cpu_count(),
          "arch": platform.machine(), "system": f"{platform.system()} {platform.release()}",
          "python": platform.python_version()}


@functools.lru_cache(maxsize=None)
def cuda_devices() -> list[str]:
  """Names of the NVIDIA GPUs CTranslate2 can use ([] when none); nvidia-smi names them."""
  try:
    import ctranslate2
    if not ctranslate2.get_cuda_device_count():
      return []
  except Exception:  # noqa: BLE001 -- no CTranslate2 or no CUDA runtime: no GPU for Whisper
    return []
  try:
    out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                         text=True, timeout=10, check=True).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]
  except (OSError, subprocess.SubprocessError):
    return [f"cuda:{i}" for i in range(ctranslate2.get_cuda_device_count())]


def asr(options, transcriber=None) -> dict[str, Any]:
  """The ASR stage's provenance: asr.* settings, the compute type CTranslate2 resolved, where it ran."""
  inner = getattr(getattr(transcriber, "model", None), "model", None)  # ctranslate2.models.Whisper
  resolved = getattr(inner, "compute_type", None)
  device = getattr(inner, "device", None)
  on_gpu = device == "cuda" or (device is None and options.device in ("cuda", "auto") and cuda_devices())
  if getattr(options, "backend", "faster_whisper") == "jax":  # Flax Whisper: the JAX devices it sharded over
    mesh = getattr(transcriber, "mesh", None)
    return {"model": str(options.model), "backend": "jax", "compute_type": options.compute_type,
            "beam_size": 1, "language": options.language or None, "packing": options.packing,
            "jax_devices": sorted({f"{d.platform}:{d.device_kind}" for d in mesh.devices.flat}) if mesh else [],
            "num_devices": int(mesh.devices.size) if mesh else 0,
            "transcriber": type(transcriber).__name__ if transcriber is not None else None,
            "libraries": library_versions(ASR_LIBRARIES + ("jax", "flax", "transformers")), "machine": machine()}
  return {"model": str(options.model), "device": device or options.device,
          "compute_type": options.compute_type, "compute_type_resolved": resolved,
          "beam_size": options.beam_size, "language": options.language or None, "packing": options.packing,
          "cpu_threads": options.cpu_threads, "accelerator": cuda_devices() if on_gpu else [],
          "transcriber": type(transcriber).__name__ if transcriber is not None else None,
          "libraries": library_versions(ASR_LIBRARIES), "machine": machine()}


def label(labeler_config, labeler=None) -> dict[str, Any]:
  """The label stage's provenance: the labeler's kind, model id, taxonomy and dtype, and where it ran."""
  from lanser_jax import labelers
  model = labeler_config.model or (labelers.DEFAULT_ENTAILMENT_MODEL if labeler_config.kind == "entailment"
                                   else labelers.DEFAULT_ENCODER_MODEL)
  try:
    import jax
    devices = sorted({f"{d.platform}:{d.device_kind}" for d in jax.local_devices()})
  except Exception:  # noqa: BLE001 -- a labeler without JAX (a test double) runs where Python runs
    devices = []
  return {"kind": labeler_config.kind, "model": str(model), "taxonomy": str(labeler_config.taxonomy),
          "dtype": labeler_config.dtype, "labeler": type(labeler).__name__ if labeler is not None else None,
          "jax_devices": devices, "libraries": library_versions(LABEL_LIBRARIES), "machine": machine()}


def merged(summaries: list[dict[str, Any]]) -> Any:
  """The stage summary's provenance: the pieces' one record, or the list of distinct records when pieces ran
  on different machines or settings (None when no piece recorded one)."""
  distinct = []
  for s in summaries:
    p = s.get("provenance")
    if p is not None and p not in distinct:
      distinct.append(p)
  return distinct[0] if len(distinct) == 1 else (distinct or None)
