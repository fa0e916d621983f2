"""Fine-tuning on CREMA-D (6 classes), on the split chosen by `split` (default actor_seeded).

  # features first: lanser_jax/experiments/labeling/crema_d.py writes <data_root>/crema_d/features (split=emobox:
  # crema_d/features_emobox; split=tfds: crema_d_tfds/features); this file reads the same split's folder:
  python -m lanser_jax.main \
      --config=lanser_jax/experiments/finetune_crema_d.py:fraction=0.1,seed=0,pretrained=peoples_speech \
      --workdir=/data/lanser/runs/crema_d/ps/0.1/s0
  ...finetune_crema_d.py:fraction=1.0,seed=0                                   # from scratch
  ...finetune_crema_d.py:fraction=1.0,seed=0,pretrained=peoples_speech,probe=True  # linear probe
  python -m lanser_jax.main --config=lanser_jax/experiments/finetune_crema_d.py:runlocal,platform=cpu \
      --workdir=/tmp/ft_local --config.data.dir=/tmp/lanser_synth

Arguments: split (actor_seeded: the project's speaker-independent 70/10/20 by actor, seed 0 | tfds: TFDS
crema_d's splits | emobox: EmoBox's fold 1), fraction (of the train split only), seed, pretrained
(none|peoples_speech|condensed_movies), taxonomy/template/labeler/soft (which pre-training run), probe,
platform, runlocal, data_root, runs_root.
Ours: as lanser_jax/experiments/finetune_iemocap.py (~30 epochs, at least 600 steps, AdamW 3e-4 at batch 64).
Expected cost: 600..2,400 steps of batch 64; minutes on one GPU (not measured); only runlocal on CPU.
"""

import os

from lanser_jax import config_lib
from lanser_jax.experiments import common as layout

# Model, crops, optimiser, steps per epoch and platform sizes: lanser_jax/experiments/finetune_iemocap.py's `finetune`,
# with this corpus's folder and size.
IEMOCAP = config_lib.load_python_file(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "finetune_iemocap.py"))
NUM_TRAIN_UTTS = 5200  # ~5,200 training clips (70% of 7,442; the split is by speaker)


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, **layout.common_args(**IEMOCAP.ARGS, split="actor_seeded"))
  return IEMOCAP.finetune(arg, layout.finetune_data_dir("crema_d", arg.data_root, 0, arg.split), NUM_TRAIN_UTTS)
