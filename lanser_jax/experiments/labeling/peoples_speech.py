"""LanSER pre-training data: People's Speech (HF hub parquet shards) -> Whisper large-v3 transcripts
-> roberta-large-mnli weak labels over the fine40 taxonomy -> 64-bin log-mel shards.

  # once per host (or a SLURM array with one task per GPU: the process flags come from SLURM_ARRAY_*)
  python -m lanser_jax.stages.main --config=lanser_jax/experiments/labeling/peoples_speech.py \
      --stage=all --workdir=/data/lanser/ps --num_processes=$NUM_HOSTS --process_index=$HOST \
      --config.manifest.root=/data/peoples_speech/clean --config.wait_seconds=86400

`root` holds the downloaded `<split>-NNNNN-of-MMMMM.parquet` files (any depth). Cost: the GPU
throughput of Whisper large-v3 here is not measured yet (no GPU run so far): time one piece first.
The features stage measured ~2,900x real time per CPU core from WAV (benchmarks/features.py).
"""

import ml_collections

from lanser_jax.stages import defaults


def get_config(arg=None):
  del arg
  c = defaults.default_config()
  c.num_pieces = 1024
  c.manifest = ml_collections.ConfigDict(
      {"adapter": "peoples_speech", "root": "/data/peoples_speech"})
  c.asr.model = "large-v3"
  c.asr.device = "cuda"
  c.asr.compute_type = "float16"
  c.asr.batch_size = 32
  c.asr.language = "en"  # People's Speech is English; skips language detection
  c.asr.decode_workers = 4
  c.labeler.kind = "entailment"  # roberta-large-mnli, template "The emotion of the conversation is {}."
  c.labeler.taxonomy = "fine40"
  c.labeler.batch_size = 32
  c.features.label_source = "weak"
  c.features.stats_split = "train"
  return c
