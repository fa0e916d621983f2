"""Streaming a recording through the front end: the log-mel and the windows a stream gives are the ones the
whole-file path gives, for any block sizes; blocks read from files (WAV, and a video's sound track) equal the
decoder's samples."""

import numpy as np
import pytest
import soundfile

from lanser_jax.audio import decode
from lanser_jax.audio import log_mel as log_mel_lib
from lanser_jax.input_pipeline import windows
from lanser_jax.serving import stream


def _split(x, rng, max_block):
  i = 0
  while i < len(x):
    n = int(rng.integers(1, max_block))
    yield x[i:i + n]
    i += n


@pytest.mark.parametrize("samples", [100, 511, 16000, 16000 * 7 + 123])
def test_log_mel_stream_equals_whole_file_log_mel(samples):
  rng = np.random.default_rng(samples)
  lm = log_mel_lib.LogMel()
  x = (0.1 * rng.standard_normal(samples)).astype(np.float32)
  s = stream.LogMelStream(lm)
  got = np.concatenate([s.push(b) for b in _split(x, rng, 9000)] + [s.finish()])
  want = lm.one(x)
  assert got.shape == want.shape
  np.testing.assert_array_equal(got, want)  # the same blocks of 128 frames: the same numbers


@pytest.mark.parametrize("window,hop", [(64, 32), (300, 150), (100, 37)])
def test_window_stream_lays_windows_as_evaluation_does(window, hop):
  rng = np.random.default_rng(window + hop)
  for total in [1, window - 1, window, window + 1, window + hop, 2 * window + 5, 1000, 1001]:
    frames = rng.standard_normal((total, 3)).astype(np.float32)
    ws = stream.WindowStream(window, hop)
    got = [w for b in _split(frames, rng, 150) for w in ws.push(b)] + ws.finish()
    assert [w.start for w in got] == windows.window_starts(total, window, hop), total
    for w in got:
      np.testing.assert_array_equal(w.crop, frames[w.start:w.start + window])


def test_audio_blocks_read_the_decoders_samples(tmp_path):
  rng = np.random.default_rng(0)
  x = (0.2 * rng.standard_normal(16000 * 5)).astype(np.float32)
  path = str(tmp_path / "a.wav")
  soundfile.write(path, np.stack([x, 0.5 * x], 1), 16000, subtype="FLOAT")
  options = decode.AudioOptions(max_seconds=100)
  got = np.concatenate(list(stream.audio_blocks(path, 16000, block_seconds=0.7)))
  np.testing.assert_array_equal(got, decode.load(path, options=options).samples)
  part = np.concatenate(list(stream.audio_blocks(path, 16000, 1.25, 2.0, block_seconds=0.3)))
  np.testing.assert_array_equal(part, decode.load(path, 1.25, 2.0, options).samples)
  # Another rate: a soxr stream, as close to the decoder's whole-clip soxr_hq as a stream can be.
  path44 = str(tmp_path / "b.wav")
  t = np.arange(44100 * 3) / 44100
  soundfile.write(path44, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 44100, subtype="FLOAT")
  got = np.concatenate(list(stream.audio_blocks(path44, 16000, block_seconds=0.5)))
  want = decode.load(path44, options=options).samples
  assert abs(len(got) - len(want)) <= 1
  n = min(len(got), len(want))
  assert np.max(np.abs(got[:n] - want[:n])) < 1e-3
  with pytest.raises(decode.AudioError, match="file not found"):
    list(stream.audio_blocks(str(tmp_path / "missing.wav"), 16000))
  with pytest.raises(decode.AudioError, match="past the end"):
    list(stream.audio_blocks(path, 16000, offset=9.0))


def test_stream_checks_are_the_decoders():
  options = decode.AudioOptions()
  with pytest.raises(decode.AudioError, match="x.wav: silent"):
    stream.validate(stream.StreamStats(samples=16000, peak=1e-5), options, "x.wav")
  with pytest.raises(decode.AudioError, match="too short"):
    stream.validate(stream.StreamStats(samples=100, peak=0.5), options, "x.wav")
  with pytest.raises(decode.AudioError, match="NaN"):
    stream.validate(stream.StreamStats(samples=16000, peak=0.5, finite=False), options, "x.wav")
  stream.validate(stream.StreamStats(samples=16000, peak=0.5), options, "x.wav")


def test_audio_blocks_of_a_video_container_are_the_decoders_samples(tmp_path):
  """An MP4 sound track (AAC at 48 kHz), as the timeline reads a film: PyAV's blocks, whole and from an offset,
  give the samples the decoder gives the same file and span."""
  av = pytest.importorskip("av")
  from helpers import write_audio_container
  t = np.arange(48000 * 4) / 48000
  path = str(tmp_path / "film.mp4")
  write_audio_container(av, path, (0.3 * np.sin(2 * np.pi * (300 + 200 * t) * t)).astype(np.float32), 48000)
  options = decode.AudioOptions(max_seconds=100)
  for offset, duration in ((0.0, None), (1.3, 1.5)):
    got = np.concatenate(list(stream.audio_blocks(path, 16000, offset, duration)))
    want = decode.load(path, offset, duration, options).samples
    assert abs(len(got) - len(want)) <= 1, (offset, len(got), len(want))
    n = min(len(got), len(want))
    assert np.max(np.abs(got[:n] - want[:n])) < 1e-3, offset
