"""Audio decoding/validation (lanser_jax/audio/decode.py) and batched log-mel (lanser_jax/audio/log_mel.py)."""

import io
import os

import numpy as np
import pytest
import soundfile

from lanser_jax.corpora import manifests
from helpers import write_audio_container
from lanser_jax.audio import decode
from lanser_jax.audio import log_mel


def tone(seconds, sr=16000, freq=440.0, amp=0.5, channels=1):
  t = np.arange(int(round(seconds * sr))) / sr
  x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
  return np.stack([x] * channels, axis=1) if channels > 1 else x


def write_wav(path, x, sr=16000, subtype="PCM_16"):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  soundfile.write(path, x, sr, subtype=subtype)
  return path


# ---------------------------------------------------------------------------------------------------
# Log-mel.


@pytest.mark.parametrize("options", [
    log_mel.LogMelOptions(),
    log_mel.LogMelOptions(window_ms=32.0, hop_ms=12.5, num_mel_bins=40, fmin=50.0, fmax=7600.0,
                           log_floor=1e-5),
    log_mel.LogMelOptions(sample_rate=8000, n_fft=1024, num_mel_bins=32),
])
def test_batched_log_mel_matches_librosa(options):
  rng = np.random.default_rng(0)
  lengths = [100, options.fft_length - 1, options.sample_rate, int(2.37 * options.sample_rate)]
  waves = [0.1 * rng.standard_normal(n).astype(np.float32) for n in lengths]
  waves.append(tone(1.0, options.sample_rate, freq=300.0))
  out = log_mel.LogMel(options)(waves)
  assert len(out) == len(waves)
  for w, mel in zip(waves, out):
    ref = log_mel.librosa_log_mel(w, options)
    assert mel.shape == ref.shape == (options.num_frames(len(w)), options.num_mel_bins)
    assert mel.dtype == np.float32
    np.testing.assert_allclose(mel, ref, atol=2e-4, rtol=0)


def test_log_mel_floor_and_settings():
  o = log_mel.LogMelOptions()
  assert (o.win_length, o.hop_length, o.fft_length, o.max_frequency) == (400, 160, 512, 8000.0)
  (silence,) = log_mel.LogMel(o)([np.zeros(1600, np.float32)])
  np.testing.assert_allclose(silence, np.log(o.log_floor), rtol=1e-6)
  info = o.to_json()
  assert info["num_mel_bins"] == 64 and info["frames_per_second"] == 100.0
  assert log_mel.LogMel(o)([]) == []


def test_log_mel_peak_is_in_the_right_bin():
  o = log_mel.LogMelOptions()
  (mel,) = log_mel.LogMel(o)([tone(0.5, freq=1000.0)])
  import librosa
  centres = librosa.mel_frequencies(o.num_mel_bins + 2, fmin=o.fmin, fmax=o.max_frequency)[1:-1]
  assert abs(centres[int(np.argmax(mel[10]))] - 1000.0) < 100.0


# ---------------------------------------------------------------------------------------------------
# Audio loading.


def test_load_resamples_stereo_and_odd_rates(tmp_path):
  stereo = write_wav(str(tmp_path / "stereo.wav"), tone(1.0, 44100, channels=2), 44100)
  a = decode.load(stereo)
  assert a.sample_rate == 16000 and a.samples.ndim == 1 and a.samples.dtype == np.float32
  assert abs(len(a.samples) - 16000) <= 1
  assert 0.45 < np.max(np.abs(a.samples)) < 0.55  # mixed down, not summed
  # One channel silent: the average halves the level rather than dropping a channel.
  lr = np.stack([tone(1.0, 8000), np.zeros(8000, np.float32)], axis=1)
  b = decode.load(write_wav(str(tmp_path / "lr8k.wav"), lr, 8000))
  assert abs(len(b.samples) - 16000) <= 1 and 0.2 < np.max(np.abs(b.samples)) < 0.3


def test_load_offset_duration_and_crop(tmp_path):
  x = np.concatenate([tone(1.0, amp=0.1), tone(1.0, amp=0.8), tone(1.0, amp=0.1)])
  path = write_wav(str(tmp_path / "three.wav"), x)
  mid = decode.load(path, offset=1.0, duration=1.0)
  assert len(mid.samples) == 16000 and np.max(np.abs(mid.samples)) > 0.7 and not mid.cropped
  opts = decode.AudioOptions(max_seconds=1.5)
  cropped = decode.load(path, options=opts)
  assert cropped.cropped and len(cropped.samples) == 24000
  assert cropped.source_duration == pytest.approx(3.0)
  with pytest.raises(decode.AudioError, match="past the end"):
    decode.load(path, offset=5.0)


@pytest.mark.parametrize("make,reason", [
    (lambda p: write_wav(p, np.zeros(16000, np.float32)), "silent"),
    (lambda p: write_wav(p, tone(0.05)), "too short"),
    (lambda p: open(p, "wb").close(), "empty file"),
    (lambda p: open(p, "w").write("this is not audio at all" * 10), "unreadable"),
    (lambda p: open(p, "wb").write(open(write_wav(p + ".src.wav", tone(1.0)), "rb").read()[:30]),
     "unreadable"),  # truncated inside the header
    (lambda p: write_wav(p, np.full(16000, np.nan, np.float32), subtype="FLOAT"), "NaN"),
    (lambda p: None, "file not found"),
])
def test_bad_audio_raises_audio_error_with_reason(tmp_path, make, reason):
  path = str(tmp_path / "bad.wav")
  make(path)
  with pytest.raises(decode.AudioError, match=reason):
    decode.load(path)


def test_rejection_reasons_do_not_mix_across_decode_threads(tmp_path):
  """The stages decode on several threads; a bad file's reason must be its own, whatever opens beside it."""
  import threading
  bad = str(tmp_path / "bad.wav")
  open(bad, "wb").write(open(write_wav(bad + ".src.wav", tone(1.0)), "rb").read()[:30])
  good = write_wav(str(tmp_path / "good.wav"), tone(0.5))
  with pytest.raises(decode.AudioError) as alone:
    decode.load(bad)
  reasons = []

  def load_bad():
    for _ in range(300):
      try:
        decode.load(bad)
      except decode.AudioError as e:
        reasons.append(str(e))

  def load_good():
    for _ in range(300):
      decode.load(good)

  threads = [threading.Thread(target=load_bad), threading.Thread(target=load_good)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert len(reasons) == 300 and set(reasons) == {str(alone.value)}


def test_truncated_data_keeps_what_is_there(tmp_path):
  path = write_wav(str(tmp_path / "full.wav"), tone(2.0))
  data = open(path, "rb").read()
  cut = str(tmp_path / "cut.wav")
  open(cut, "wb").write(data[:len(data) // 2])  # header says 2 s, half of the data is there
  try:
    a = decode.load(cut)
  except decode.AudioError as e:  # libsndfile versions differ; either way no other exception
    assert "unreadable" in str(e)
  else:
    assert 0.5 < a.duration <= 2.0


def test_parquet_row_reference(tmp_path):
  pa = pytest.importorskip("pyarrow")
  import pyarrow.parquet as pq
  blobs = []
  for i in range(5):
    buf = io.BytesIO()
    soundfile.write(buf, tone(0.5, freq=200.0 * (i + 1)), 16000, format="FLAC")
    blobs.append({"bytes": buf.getvalue(), "path": f"{i}.flac"})
  path = str(tmp_path / "train-00000-of-00001.parquet")
  pq.write_table(pa.table({"id": [f"u{i}" for i in range(5)], "audio": blobs}), path,
                 row_group_size=2)
  for row in (3, 0, 4):
    a = decode.load(manifests.parquet_ref(path, row))
    spectrum = np.abs(np.fft.rfft(a.samples))
    assert np.argmax(spectrum) / a.duration == pytest.approx(200.0 * (row + 1), abs=4)
  with pytest.raises(decode.AudioError, match="row 9 does not exist"):
    decode.load(manifests.parquet_ref(path, 9))


def test_video_container_via_pyav(tmp_path):
  av = pytest.importorskip("av")
  path = str(tmp_path / "clip.mp4")
  write_audio_container(av, path, tone(2.0, 48000, freq=500.0), 48000)
  a = decode.load(path, offset=0.5, duration=1.0)
  assert abs(a.duration - 1.0) < 0.03
  spectrum = np.abs(np.fft.rfft(a.samples))
  assert np.argmax(spectrum) / a.duration == pytest.approx(500.0, abs=5)


def test_clear_error_without_a_video_decoder(tmp_path, monkeypatch):
  av = pytest.importorskip("av")
  path = str(tmp_path / "clip.mp4")
  write_audio_container(av, path, tone(0.5, 48000), 48000)
  real_find_spec = decode.importlib.util.find_spec
  monkeypatch.setattr(decode.importlib.util, "find_spec",
                      lambda name, *a: None if name == "av" else real_find_spec(name, *a))
  monkeypatch.setattr(decode.shutil, "which", lambda name: None)
  with pytest.raises(decode.AudioError, match="install PyAV .* or put ffmpeg on PATH"):
    decode.load(path)
