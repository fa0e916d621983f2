"""Packing short utterances into one Whisper window, and giving each one back its own words by time.

Whisper's encoder always runs on a 30 s window, so one 3 s utterance per window spends nine tenths of
every encoder pass on padding. Here consecutive utterances are laid end to end, `GAP_SECONDS` of
silence apart, into windows of at most 30 s; the ASR stage transcribes a window once and aligns its
words to the audio (Whisper's cross-attention alignment, as for word timestamps). Each word then goes
to the utterance whose audio it starts in. The rules below decide when that is *not* clear-cut, so the
utterance is transcribed alone instead (asr.py counts these fallbacks):

- a word that starts in a gap, more than `TOLERANCE_SECONDS` from both neighbouring utterances (it may
  belong to either, or be made up from the silence): both neighbours fall back;
- a word that starts in one utterance and ends more than `TOLERANCE_SECONDS` into the next (a word
  straddling the gap, e.g. two words merged across it): both fall back;
- words after the last utterance (invented from the padding): the last utterance falls back;
- a word that covers more than `MAX_WORD_SECONDS` of its utterance's audio, or an utterance with fewer
  than `MIN_WORDS_PER_SECOND` words per second of its audio: Whisper skipped speech there (the alignment
  then stretches a neighbouring word over the skipped audio), so the words it kept may be misplaced;
- an utterance that gets no word at all (silence, or Whisper skipped it): it falls back, so that it
  gets its own no-speech probability and empty text exactly as when transcribed alone.

The alignment's word times are contiguous (a word ends where the next starts), so the silence of a gap
is absorbed by the word or punctuation before it; that is why a word is placed by its *start*, and why
a word may run into the next utterance by up to the tolerance. Punctuation is not placed by time: it
goes with the word before it, or, if it opens with a space (an opening quote or bracket), the word
after it, as faster-whisper merges punctuation into words.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

WINDOW_SECONDS = 30.0  # Whisper's window: the most audio one packed window holds
GAP_SECONDS = 0.5  # silence between packed utterances (docs/design_notes.md says why 0.5)
TOLERANCE_SECONDS = 0.2  # slack of the alignment's word times (10 of its 20 ms frames)
MAX_WORD_SECONDS = 1.5  # longer than any word said; also covers a word absorbing a clip's own silence
MIN_WORDS_PER_SECOND = 0.5  # conversational speech is 2-3 words/s
SAMPLE_RATE = 16000


class WindowCounter:
  """Places clips into windows as they come: greedy, in order, consecutive clips share a window while
  they fit in `max_seconds` with gaps between them; a clip longer than the window gets its own."""

  def __init__(self, max_seconds: float | None = None, gap_seconds: float | None = None):
    max_seconds = WINDOW_SECONDS if max_seconds is None else max_seconds
    gap_seconds = GAP_SECONDS if gap_seconds is None else gap_seconds
    self.count, self._length = 0, 0
    self._limit, self._gap = int(max_seconds * SAMPLE_RATE), int(gap_seconds * SAMPLE_RATE)

  def add(self, num_samples: int) -> int:
    """Places one clip; returns the number of windows so far (the clip is in the last one)."""
    if self.count and self._length + self._gap + num_samples <= self._limit:
      self._length += self._gap + num_samples
    else:
      self.count, self._length = self.count + 1, num_samples
    return self.count


def plan_windows(num_samples: Sequence[int], max_seconds: float | None = None,
                 gap_seconds: float | None = None) -> list[list[int]]:
  """The clips (indices) of each window, as `WindowCounter` places them."""
  counter, windows = WindowCounter(max_seconds, gap_seconds), []
  for i, n in enumerate(num_samples):
    if counter.add(n) > len(windows):
      windows.append([])
    windows[-1].append(i)
  return windows


def concatenate(waves: Sequence[np.ndarray], gap_seconds: float | None = None
                ) -> tuple[np.ndarray, list[tuple[float, float]]]:
  """The window's audio and each utterance's (start, end) in seconds within it."""
  gap_seconds = GAP_SECONDS if gap_seconds is None else gap_seconds
  gap = np.zeros(int(gap_seconds * SAMPLE_RATE), np.float32)
  parts, spans, pos = [], [], 0
  for k, w in enumerate(waves):
    if k:
      parts.append(gap)
      pos += len(gap)
    parts.append(np.asarray(w, np.float32))
    spans.append((pos / SAMPLE_RATE, (pos + len(w)) / SAMPLE_RATE))
    pos += len(w)
  return np.concatenate(parts), spans


@dataclasses.dataclass
class Word:
  text: str  # with its leading space, as the tokenizer decodes it
  start: float  # seconds in the window
  end: float
  tokens: list[int]
  logprobs: list[float]  # log-probability of each of its tokens


def is_punctuation(text: str) -> bool:
  return bool(text.strip()) and not any(c.isalnum() for c in text)


def assign_words(words: Sequence[Word], spans: Sequence[tuple[float, float]],
                 tolerance: float = TOLERANCE_SECONDS) -> list[list[int] | None]:
  """For each utterance (span), the indices of its words, or None if it must be transcribed alone."""
  n = len(spans)
  owner: list[int | None] = [None] * len(words)
  doubtful = set()
  for i, w in enumerate(words):
    if not w.text.strip() or is_punctuation(w.text):
      continue
    j = _span_of(w.start, spans, tolerance)
    if j is None or j == n:  # in the middle of a gap, or after the last utterance
      k = _gap_index(w.start, spans)
      doubtful.update(x for x in (k, k + 1) if 0 <= x < n)
      continue
    if j + 1 < n and w.end > spans[j + 1][0] + tolerance:  # runs well into the next utterance
      doubtful.update((j, j + 1))
      continue
    if min(w.end, spans[j][1]) - max(w.start, spans[j][0]) > MAX_WORD_SECONDS:
      doubtful.add(j)
    owner[i] = j
  _place_punctuation(words, owner)
  per_span: list[list[int]] = [[] for _ in range(n)]
  for i, j in enumerate(owner):
    if j is not None:
      per_span[j].append(i)
  placed = [j for j in owner if j is not None]
  if any(b < a for a, b in zip(placed, placed[1:])):
    return [None] * n  # words out of order: the alignment cannot be trusted for this window
  for j, ids in enumerate(per_span):
    num_words = sum(not is_punctuation(words[i].text) for i in ids)
    if num_words < max(1.0, MIN_WORDS_PER_SECOND * (spans[j][1] - spans[j][0])):
      doubtful.add(j)
  return [None if j in doubtful else ids for j, ids in enumerate(per_span)]


def _span_of(t: float, spans, tolerance: float) -> int | None:
  """The utterance a time falls in (within tolerance of its edges); len(spans) past the last one."""
  for j, (a, b) in enumerate(spans):
    if a - tolerance <= t < b + tolerance:
      return j
  if t >= spans[-1][1] + tolerance:
    return len(spans)
  return None


def _gap_index(t: float, spans) -> int:
  """k such that t lies after utterance k (-1: before the first)."""
  return max([j for j, (a, _) in enumerate(spans) if a <= t], default=-1)


def _place_punctuation(words: Sequence[Word], owner: list[int | None]):
  """Punctuation joins the next word if it opens with a space, else the previous word."""
  for i, w in enumerate(words):
    if not is_punctuation(w.text):
      continue
    nxt = next((owner[k] for k in range(i + 1, len(words)) if not is_punctuation(words[k].text)),
               None)
    prev = next((owner[k] for k in range(i - 1, -1, -1) if not is_punctuation(words[k].text)),
                None)
    owner[i] = (nxt if nxt is not None else prev) if w.text.startswith(" ") else \
        (prev if prev is not None else nxt)


def words_from_alignment(tokenizer, tokens: list[int], alignment, frames_per_second: float = 50.0
                         ) -> list[Word]:
  """Words with times from a ctranslate2 WhisperAlignmentResult of `tokens` (text tokens only).

  The alignment is a monotonic path of (token index, frame) pairs; a token starts at the first frame
  the path reaches it, and a word spans from its first token's start to the next word's start.
  """
  if not tokens:
    return []
  word_texts, word_tokens = tokenizer.split_to_word_tokens(tokens + [tokenizer.eot])
  pairs = np.asarray(alignment.alignments, np.int64).reshape(-1, 2)
  first = np.flatnonzero(np.diff(pairs[:, 0], prepend=-1) > 0)  # the path's first step on each token
  starts = pairs[first, 1] / frames_per_second  # one per token, then end-of-text
  probs = np.asarray(alignment.text_token_probs, np.float64)
  out, pos = [], 0
  for text, toks in zip(word_texts[:-1], word_tokens[:-1]):  # the last "word" is end-of-text
    end = pos + len(toks)
    out.append(Word(text, float(starts[min(pos, len(starts) - 1)]),
                    float(starts[min(end, len(starts) - 1)]), list(toks),
                    [float(np.log(max(p, 1e-12))) for p in probs[pos:end]]))
    pos = end
  return out
