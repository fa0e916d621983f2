"""The one progress reporter: work done against a total, its rate and ETA, as plain log lines.

Every long job reports through it: the offline stages and the serving CLIs (items), the demo corpus builder
(utterances) and the training loop (`writers.Progress`: steps, shown as examples/s). Lines are plain (no
\\r) so that they read well in cluster log files.
"""

from __future__ import annotations

import sys
import time
from typing import Callable


class Progress:
  """Counts `done` of `total` (None: unknown) and prints a line every `interval` seconds and at `close`.

  The rate's clock can start late (`start`: leave a compilation out) and skip time spent elsewhere
  (`exclude`: evaluation, checkpoints)."""

  def __init__(self, what: str, total: int | None = None, interval: float = 10.0, stream=None,
               done: int = 0, unit: str = "items", detail: Callable[[], str] | None = None):
    # The stream is looked up when printing, not at import: sys.stderr may be replaced (pytest, notebooks).
    self.what, self.total, self.interval, self._stream = what, total, interval, stream
    self.unit, self.detail = unit, detail  # detail: more of the same line (the Ray runner's pieces per stage)
    self.done = done
    self._t0 = self._last = time.monotonic()
    self._done0, self.started = done, False

  @property
  def stream(self):
    return self._stream if self._stream is not None else sys.stderr

  def start(self):
    """Restarts the rate's clock at the current count."""
    self._t0, self._done0, self.started = time.monotonic(), self.done, True

  def exclude(self, seconds: float):
    """Leaves `seconds` spent outside the counted work out of the rate."""
    self._t0 += seconds

  def elapsed(self, now: float | None = None) -> float:
    return max((time.monotonic() if now is None else now) - self._t0, 1e-9)

  def rate(self, now: float | None = None) -> float:
    """Units per second since the clock started."""
    return (self.done - self._done0) / self.elapsed(now)

  def eta(self, rate: float) -> float | None:
    """Seconds left at `rate` (None: no total, or no rate yet)."""
    return (self.total - self.done) / rate if self.total and rate > 0 else None

  def tick(self):
    """Prints the line if `interval` has passed, without new work (a job waiting on its workers)."""
    self.update(0)

  def update(self, n: int = 1):
    self.done += n
    now = time.monotonic()
    if now - self._last >= self.interval:
      self._last = now
      self._print(now)

  def _print(self, now: float, final: bool = False):
    rate = self.rate(now)
    line = f"[{self.what}] {self.done}"
    if self.total:
      line += f"/{self.total} ({100 * self.done / self.total:.1f}%)"
    line += f" {self.unit}, {rate:.2f}/s, elapsed {hms(self.elapsed(now))}"
    eta = self.eta(rate)
    if eta is not None and not final:
      line += f", ETA {hms(eta)}"
    if self.detail is not None:
      line += f"; {self.detail()}"
    print(line, file=self.stream, flush=True)

  def close(self):
    self._print(time.monotonic(), final=True)


def hms(seconds: float) -> str:
  s = int(seconds)
  return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
