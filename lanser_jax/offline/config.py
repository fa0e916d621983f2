"""Every key of a labelling config (experiments/labeling/*.py start from `default_config`), and the old key
names still read with a message.

Each option's default is written once: the typed options (`AudioOptions`, `AsrOptions`, `LogMelOptions`)
hold them and their config sections are made from them; the keys that are not options (what the stages
read and filter on) are written here. The log-mel sample rate is audio.sample_rate (the rate the audio is
decoded to), so it is not a features key.
"""

from __future__ import annotations

import ml_collections

from lanser_jax import audio as audio_lib
from lanser_jax import features as features_lib
from lanser_jax import options


def default_config() -> ml_collections.ConfigDict:
  from lanser_jax.labeling import asr, labelers
  c = ml_collections.ConfigDict()
  c.stages = ("manifest", "asr", "label", "features")  # what --stage=all runs, in order
  c.num_pieces = 16  # pieces per stage (fixed for a workdir: rerun with the same value)
  c.output_shards = ml_collections.config_dict.placeholder(int)  # old name of num_pieces (deprecated)
  c.wait_seconds = 0.0  # how long process 0 waits for other hosts' pieces (and others for manifest)
  c.offline = False  # True: HF_HUB_OFFLINE=1
  c.manifest = ml_collections.ConfigDict({"adapter": "folder", "root": ""})  # adapter kwargs
  c.audio = options.config_section(audio_lib.AudioOptions)
  c.asr = options.config_section(asr.AsrOptions)
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
      features_lib.LogMelOptions, exclude=("sample_rate",),
      dir_name="features",
      label_source="weak",  # weak: labels/ (only weakly labelled utterances); human; none
      label_names=(),  # for label_source="human"
      split_map=ml_collections.ConfigDict(),  # manifest "split" or "split/speaker" -> output split
      stats_split="train", batch_clips=32, decode_workers=2)
  c.features.sample_rate = ml_collections.config_dict.placeholder(int)  # deprecated: it is audio.sample_rate
  c.features.folds = ml_collections.ConfigDict()  # recorded in dataset.json (IEMOCAP folds)
  return c


def resolve_deprecated(config, log=print):
  """Reads the old key names into the new ones (once; a message each): output_shards counted pieces, not
  shard files (-> num_pieces); features.sample_rate had to equal audio.sample_rate (-> audio.sample_rate)."""
  old = config.get("output_shards")
  if old is not None:  # set on purpose (an old file or --config.output_shards=N): it wins
    log(f"warning: config.output_shards is deprecated (it counts pieces, not shard files); "
        f"read as num_pieces={old}")
    config.num_pieces, config.output_shards = int(old), None
  rate = config.features.get("sample_rate")
  if rate is not None:
    if rate != config.audio.sample_rate:
      raise ValueError(f"features.sample_rate {rate} != audio.sample_rate {config.audio.sample_rate}")
    log("warning: config.features.sample_rate is deprecated: the features use audio.sample_rate")
    config.features.sample_rate = None
