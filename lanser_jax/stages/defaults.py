"""Every key of a labelling config: lanser_jax/experiments/labeling/*.py start from `default_config`.

Each option's default is written once: the typed options (`AudioOptions`, `AsrOptions`, `LogMelOptions`)
hold them and their config sections are made from them; the keys that are not options (what the stages
read and filter on) are written here. The log-mel sample rate is audio.sample_rate (the rate the audio is
decoded to), so it is not a features key.
"""

from __future__ import annotations

import ml_collections

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
  return c
