"""A ctypes driver of the eSpeak NG library bundled by `espeakng-loader`: text + prosody -> 16 kHz audio.

eSpeak NG is one global synthesiser per process that carries hidden state from one utterance to the next. To
make corpora byte-identical whatever the order or the number of worker processes, every utterance gets a
freshly loaded library with every setting (voice, rate, volume, pitch, range, word gap, noise seed) set anew.
"""

from __future__ import annotations

import _ctypes
import ctypes
import dataclasses
import os
import threading

import numpy as np
from scipy import signal

SAMPLE_RATE = 16_000

# espeak_AUDIO_OUTPUT: in synchronous mode espeak_Synth returns after every sample went to the callback.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
# espeak_PARAMETER
_RATE, _VOLUME, _PITCH, _RANGE, _WORDGAP = 1, 2, 3, 4, 7
# espeak_Synth flags and position type
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_EE_OK = 0

# int SynthCallback(short *wav, int numsamples, espeak_EVENT *events); returning 0 continues synthesis.
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                   ctypes.c_void_p)


class EspeakError(RuntimeError):
  """The library could not be loaded, a voice does not exist, or synthesis failed."""


@dataclasses.dataclass(frozen=True)
class Prosody:
  """eSpeak NG's global speech settings, in its own units."""
  rate: int = 175  # words per minute, 80..450
  pitch: int = 50  # base pitch, 0..100
  pitch_range: int = 50  # intonation range, 0 (monotone)..100
  volume: int = 100  # amplitude, 0..200
  word_gap: int = 0  # extra pause between words, in units of 10 ms

  def clipped(self) -> "Prosody":
    """The same settings pulled into the ranges eSpeak NG accepts."""
    clip = lambda v, lo, hi: int(min(max(round(v), lo), hi))
    return Prosody(rate=clip(self.rate, 80, 450), pitch=clip(self.pitch, 0, 100),
                   pitch_range=clip(self.pitch_range, 0, 100), volume=clip(self.volume, 0, 200),
                   word_gap=clip(self.word_gap, 0, 50))


def _library_paths() -> tuple[str, str]:
  try:
    import espeakng_loader  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise EspeakError("eSpeak NG is not installed: pip install espeakng-loader==0.2.4") from e
  return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()


class _Library:
  """One freshly loaded copy of the library, initialised for synchronous synthesis, unloaded on `close`."""

  def __init__(self, library_path: str, data_path: str, callback):
    try:
      lib = ctypes.CDLL(library_path)
    except OSError as e:
      raise EspeakError(f"cannot load {library_path}: {e}") from e
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_Terminate.restype = ctypes.c_int
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed.restype = None
    self.lib = lib
    self.sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), 0)
    if self.sample_rate <= 0:
      self.close()
      raise EspeakError(f"espeak_Initialize failed ({self.sample_rate}) with data at {data_path}")
    lib.espeak_SetSynthCallback(callback)

  def close(self):
    self.lib.espeak_Terminate()
    # Unloading resets the library's static state (pitch phase, flutter index, ...), so that the next load
    # starts exactly where this one did.
    if hasattr(_ctypes, "dlclose"):
      _ctypes.dlclose(self.lib._handle)  # pylint: disable=protected-access
    self.lib = None


class Synthesiser:
  """eSpeak NG for this process. Use `get()`: the library has one global instance per process.

  eSpeak NG carries state from one utterance into the next (the sample count drifts by a few samples and
  breath noise differs), and `espeak_Terminate` + `espeak_Initialize` do not reset it. So each utterance
  loads a fresh copy of the library, seeds its noise generator and unloads it again (0.4 ms of CPU),
  and the audio of an utterance depends only on its own text, voice, prosody and seed.
  """

  _instance: "Synthesiser | None" = None
  _instance_lock = threading.Lock()

  def __init__(self):
    self.library_path, self.data_path = _library_paths()
    self._chunks: list[np.ndarray] = []
    # Keep the callback object alive for as long as any loaded library may call it.
    self._callback = _SYNTH_CALLBACK(self._on_audio)
    self._lock = threading.Lock()
    probe = _Library(self.library_path, self.data_path, self._callback)
    self.native_rate = probe.sample_rate
    probe.close()

  @classmethod
  def get(cls) -> "Synthesiser":
    with cls._instance_lock:
      if cls._instance is None:
        cls._instance = cls()
      return cls._instance

  def _on_audio(self, wav, num_samples, events) -> int:
    del events
    if wav and num_samples > 0:
      self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
    return 0

  def has_voice(self, voice: str) -> bool:
    """Whether `voice` ('language' or 'language+variant') exists. eSpeak NG ignores unknown variants."""
    language, _, variant = voice.partition("+")
    if variant and not os.path.isfile(os.path.join(self.data_path, "voices", "!v", variant)):
      return False
    with self._lock:
      library = _Library(self.library_path, self.data_path, self._callback)
      try:
        return library.lib.espeak_SetVoiceByName(language.encode()) == _EE_OK
      finally:
        library.close()

  def synthesise_native(self, text: str, voice: str, prosody: Prosody, seed: int = 0) -> np.ndarray:
    """Speaks `text`; int16 samples at `native_rate`. The same arguments always give the same samples."""
    prosody = prosody.clipped()
    with self._lock:
      library = _Library(self.library_path, self.data_path, self._callback)
      try:
        lib = library.lib
        if lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
          raise EspeakError(f"eSpeak NG has no voice {voice!r}")
        for parameter, value in ((_RATE, prosody.rate), (_VOLUME, prosody.volume), (_PITCH, prosody.pitch),
                                 (_RANGE, prosody.pitch_range), (_WORDGAP, prosody.word_gap)):
          if lib.espeak_SetParameter(parameter, value, 0) != _EE_OK:
            raise EspeakError(f"espeak_SetParameter({parameter}, {value}) failed")
        # Breathy variants (e.g. +f3) add noise from the library's own generator: seed it per utterance.
        lib.espeak_ng_SetRandSeed(seed & 0x7FFFFFFF)
        data = text.encode("utf-8") + b"\0"
        self._chunks = []
        status = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != _EE_OK:
          raise EspeakError(f"espeak_Synth failed ({status}) on {text!r}")
        lib.espeak_Synchronize()
        chunks, self._chunks = self._chunks, []
      finally:
        library.close()
    if not chunks:
      return np.zeros((0,), np.int16)
    return np.concatenate(chunks).astype(np.int16, copy=False)

  def synthesise(self, text: str, voice: str, prosody: Prosody, seed: int = 0) -> np.ndarray:
    """Speaks `text`; mono float32 in [-1, 1] at 16 kHz."""
    native = self.synthesise_native(text, voice, prosody, seed)
    return to_16k(native, self.native_rate)


def to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
  """int16 audio at `rate` -> float32 at 16 kHz (polyphase resampling: exact and deterministic)."""
  audio = samples.astype(np.float32) / 32768.0
  if rate != SAMPLE_RATE:
    g = np.gcd(SAMPLE_RATE, rate)
    audio = signal.resample_poly(audio, SAMPLE_RATE // g, rate // g).astype(np.float32)
  return np.clip(audio, -1.0, 1.0)


def synthesise(text: str, voice: str, prosody: Prosody = Prosody(), seed: int = 0) -> np.ndarray:
  """Module-level shortcut: mono float32 16 kHz audio of `text` spoken by `voice` with `prosody`."""
  return Synthesiser.get().synthesise(text, voice, prosody, seed)


def available_voices(candidates) -> list[str]:
  """The subset of `candidates` that the bundled voice data can speak."""
  synth = Synthesiser.get()
  return [v for v in candidates if synth.has_voice(v)]
