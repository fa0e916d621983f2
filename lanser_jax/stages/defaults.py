"""Every key of a labelling config and its allowed range: lanser_jax/experiments/labeling/*.py start from
`default_config`; `check` refuses a config with a value outside its range before any stage runs.

Each option's default is written once: the typed options (`AudioOptions`, `AsrOptions`, `LogMelOptions`)
hold them and their config sections are made from them; the keys that are not options (what the stages
read and filter on) are written here. The log-mel sample rate is audio.sample_rate (the rate the audio is
decoded to), so it is not a features key.
"""

from __future__ import annotations

import ml_collections

from lanser_jax import config_checks
from lanser_jax.audio import decode
from lanser_jax.audio import log_mel
from lanser_jax.utils import options


def default_config() -> ml_collections.ConfigDict:
  from lanser_jax.labelers import whisper
  from lanser_jax import labelers
  c = ml_collections.ConfigDict()
  c.stages = ("manifest", "asr", "label", "features")  # what --stage=all runs, in order
  c.num_pieces = 16  # pieces per stage (fixed for a workdir: rerun with the same value)
  c.wait_seconds = 0.0  # how long process 0 waits for other hosts' pieces (and others for manifest)
  c.offline = False  # True: HF_HUB_OFFLINE=1
  c.manifest = ml_collections.ConfigDict({"adapter": "folder", "root": ""})  # adapter kwargs
  c.audio = options.config_section(decode.AudioOptions)
  c.asr = options.config_section(whisper.AsrOptions)
  c.label = ml_collections.ConfigDict(dict(
      min_words=1, min_chars=2, max_no_speech_prob=0.6, min_avg_logprob=-1.0,
      max_compression_ratio=2.4,
      # Transcripts handed to the labeler per call (the progress bar moves per call). The labeler sorts by
      # length within each call's labeler.sort_window, so at least that many: 64 padded to 1.11x the real
      # tokens, 256 to 1.07x (benchmark transcripts).
      batch_size=256,
      text_source="asr",  # or "manifest": label the manifest's own `text` (reference transcripts), no ASR
      languages=()))  # ASR languages kept for labelling, e.g. ("en",) for an English NLI model; () keeps all
  c.labeler = labelers.default_config()
  c.features = options.config_section(
      log_mel.LogMelOptions, exclude=("sample_rate",),
      dir_name="features",
      label_source="weak",  # weak: labels/ (only weakly labelled utterances); human; none
      label_names=(),  # label_source="human": the declared classes; () takes the data's labels (corpora/labels.py)
      split_map=ml_collections.ConfigDict(),  # manifest "split" or "split/speaker" -> output split
      stats_split="train", batch_clips=32, decode_workers=2)
  c.features.folds = ml_collections.ConfigDict()  # recorded in dataset.json (IEMOCAP folds)
  c.ray = ray_config()
  return c


def ray_config() -> ml_collections.ConfigDict:
  """What `lanser-label --runner=ray` (stages/ray_runner.py, docs/ray.md) asks of the cluster per stage: how many
  actors (each loads its model once and takes piece after piece) and what each one holds for the whole job
  (Ray's num_cpus, num_gpus, and custom `resources` such as TPU=4). The defaults fit one 2-core machine;
  on a GPU cluster set ray.asr.num_gpus=1 and ray.asr.num_actors to the GPUs the ASR gets. Ignored by the
  local runner."""
  stage = lambda cpus: ml_collections.ConfigDict(dict(  # noqa: E731
      num_actors=1, num_cpus=cpus, num_gpus=0.0,
      # Ray's custom resources per actor: TPU chips (Ray counts a TPU host's chips as "TPU"); a config file may
      # add others (c.ray.label.resources.my_accelerator = 1.0).
      resources=ml_collections.ConfigDict(dict(TPU=0.0))))
  return ml_collections.ConfigDict(dict(
      asr=stage(1.0), label=stage(0.5), features=stage(0.5),
      max_retries=2,  # attempts after the first for a piece whose worker died or raised; then it is reported
      progress_seconds=30.0))  # how often the driver prints the job's progress line


# ---------------------------------------------------------------------------------------------------
# The allowed range of every numeric and enumerated key (lanser_jax/config_checks.py runs them; the table in
# docs/config_checks.md is made from this list).

RAY_STAGES = ("asr", "label", "features")  # the pieced stages, each with its own actors under --runner=ray
COMPUTE_TYPES = ("default", "auto", "int8", "int8_float16", "int8_float32", "int8_bfloat16", "int16",
                 "float16", "bfloat16", "float32")  # CTranslate2's compute types


def _stages(v, config, context):
  from lanser_jax.stages import chain  # here: chain imports this module; a stage added there counts
  unknown = [s for s in (v or ()) if s not in chain.BY_NAME]
  return f"unknown {unknown}" if unknown or not v else None


def _n_fft(v, config, context):
  win = round(config.audio.sample_rate * config.features.window_ms / 1000)
  return None if v == 0 or v >= win else f"the window is {win} samples"


def _fmax(v, config, context):
  nyquist = config.audio.sample_rate / 2
  fmin = config.features.fmin
  if v and (v > nyquist or v <= fmin):
    return f"features.fmin is {fmin:g}, audio.sample_rate / 2 is {nyquist:g}"
  if not v and fmin >= nyquist:
    return f"features.fmin is {fmin:g} >= audio.sample_rate / 2 ({nyquist:g})"
  return None


def _adapter(v, config, context):
  from lanser_jax import corpora  # here: the training command needs no corpus code
  return None if v in corpora.ADAPTERS else f"the adapters are {sorted(corpora.ADAPTERS)}"


def _buckets(v, config, context):
  if not v or not all(config_checks.is_number(b, True) and b >= 1 for b in v):
    return ""
  return None if list(v) == sorted(set(v)) else "not strictly increasing"


CHECKS: tuple[config_checks.Check, ...] = (
    config_checks.cross("stages", "a non-empty list of the stages (manifest, asr, label, features)", _stages),
    config_checks.cross("manifest.adapter", "a corpus adapter of lanser_jax/corpora (folder, iemocap, ...)",
                        _adapter),
    config_checks.between("num_pieces", 1, integer=True),
    config_checks.between("wait_seconds", 0),
    config_checks.boolean("offline"),
    config_checks.between("audio.sample_rate", 1, integer=True),
    config_checks.between("audio.max_seconds", 0, lo_open=True),
    config_checks.between("audio.min_seconds", 0),
    config_checks.cross("audio.min_seconds", "< audio.max_seconds",
                        lambda v, config, context: None if v < config.audio.max_seconds
                        else f"audio.max_seconds is {config.audio.max_seconds:g}"),
    config_checks.between("audio.silence_dbfs", hi=0),
    config_checks.one_of("asr.device", ("auto", "cpu", "cuda")),
    config_checks.one_of("asr.compute_type", COMPUTE_TYPES),
    config_checks.between("asr.cpu_threads", 0, integer=True),
    config_checks.between("asr.batch_size", 1, integer=True),
    config_checks.between("asr.beam_size", 1, integer=True),
    config_checks.between("asr.decode_workers", 0, integer=True),
    config_checks.one_of("asr.packing", ("on", "off")),
    config_checks.one_of("asr.backend", ("faster_whisper", "jax")),
    config_checks.between("label.min_words", 0, integer=True),
    config_checks.between("label.min_chars", 0, integer=True),
    config_checks.between("label.max_no_speech_prob", 0, 1),
    config_checks.between("label.min_avg_logprob", hi=0),
    config_checks.between("label.max_compression_ratio", 0, lo_open=True),
    config_checks.between("label.batch_size", 1, integer=True),
    config_checks.one_of("label.text_source", ("asr", "manifest")),
    config_checks.one_of("labeler.kind", ("entailment", "sentence_encoder")),
    config_checks.one_of("labeler.template_reduce", ("probs", "logits")),
    config_checks.between("labeler.max_length", 1, integer=True),
    config_checks.between("labeler.batch_size", 1, integer=True),
    config_checks.between("labeler.sort_window", 1, integer=True),
    config_checks.cross("labeler.length_buckets", "a non-empty, strictly increasing list of integers >= 1",
                        _buckets),
    config_checks.one_of("labeler.dtype", ("float32", "bfloat16")),
    config_checks.one_of("labeler.score_mode", ("label_softmax", "entail_vs_contradict")),
    config_checks.between("labeler.temperature", 0, lo_open=True),
    config_checks.between("features.window_ms", 0, lo_open=True),
    config_checks.between("features.hop_ms", 0, lo_open=True),
    config_checks.between("features.n_fft", 0, integer=True),
    config_checks.cross("features.n_fft", "0 (the next power of two) or >= the window in samples", _n_fft),
    config_checks.between("features.num_mel_bins", 1, integer=True),
    config_checks.between("features.fmin", 0),
    config_checks.between("features.fmax", 0),
    config_checks.cross("features.fmax", "0 (audio.sample_rate / 2) or in (features.fmin, audio.sample_rate / 2]",
                        _fmax),
    config_checks.between("features.log_floor", 0, lo_open=True),
    config_checks.one_of("features.label_source", ("weak", "human", "none")),
    config_checks.between("features.batch_clips", 1, integer=True),
    config_checks.between("features.decode_workers", 0, integer=True),
    *(check for name in RAY_STAGES for check in (
        config_checks.between(f"ray.{name}.num_actors", 1, integer=True),
        config_checks.between(f"ray.{name}.num_cpus", 0),
        config_checks.between(f"ray.{name}.num_gpus", 0),
        config_checks.between(f"ray.{name}.resources.TPU", 0))),
    config_checks.between("ray.max_retries", 0, integer=True),
    config_checks.between("ray.progress_seconds", 0, lo_open=True),
)


def check(config):
  """Raises config_checks.ConfigError listing every key outside its range (one line each)."""
  config_checks.raise_problems(config_checks.problems(CHECKS, config), "lanser-label command")
