"""LanSER pre-training data: Condensed Movies (video clips) -> Whisper large-v3 transcripts
-> roberta-large-mnli weak labels over the fine40 taxonomy -> 64-bin log-mel shards.

  # once per host (or a SLURM array with one task per GPU: the process flags come from SLURM_ARRAY_*)
  python -m lanser_jax.stages.main --config=lanser_jax/experiments/labeling/condensed_movies.py \
      --stage=all --workdir=/data/lanser/cm --num_processes=$NUM_HOSTS --process_index=$HOST \
      --config.manifest.root=/data/condensed_movies --config.wait_seconds=86400

`root` holds `videos/` (clips named <videoid>.<ext>, any depth; PyAV/ffmpeg decodes their audio) and,
optionally, `metadata/clips.csv` (videoid, imdbid, ...): the movie stands in for the speaker, so no movie
is in two splits. Clips are cut into 10-second segments (the adapter's `segment_seconds`); ~1,000 h of
audio. Movies are not all in English: ASR detects each segment's language, and the label stage keeps
only English transcripts for the English NLI model (`label.languages`; the others are listed in the
label stage's errors files with their language).
Cost: as lanser_jax/experiments/labeling/peoples_speech.py (GPU throughput of large-v3 not measured here).
"""

import ml_collections

from lanser_jax.stages import defaults


def get_config(arg=None):
  del arg
  c = defaults.default_config()
  c.num_pieces = 64
  c.manifest = ml_collections.ConfigDict(
      {"adapter": "condensed_movies", "root": "/data/condensed_movies", "segment_seconds": 10.0})
  c.asr.model = "large-v3"
  c.asr.device = "cuda"
  c.asr.compute_type = "float16"
  c.asr.batch_size = 32
  c.asr.decode_workers = 4  # video decoding (PyAV) is the CPU-heavy part of this corpus
  c.labeler.kind = "entailment"  # roberta-large-mnli, template "The emotion of the conversation is {}."
  c.labeler.taxonomy = "fine40"
  c.labeler.batch_size = 32
  c.label.languages = ("en",)
  c.features.label_source = "weak"
  c.features.stats_split = "train"
  return c
