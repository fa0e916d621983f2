"""The one thread prefetcher: work on a few threads ahead of its consumer, results in order.

Audio decoding (the stages, predict, embed) and tokenisation (the labelers) release the GIL, so running
them on threads ahead of the model keeps the model busy instead of stalling it.
"""

from __future__ import annotations

import collections
import itertools
from concurrent import futures
from typing import Any, Callable, Iterable, Iterator


def map_ahead(fn: Callable, items: Iterable, workers: int = 2, lookahead: int = 16):
  """Yields (item, fn(item) or the Exception it raised) in order, `fn` running on `workers` threads up to
  `lookahead` items ahead (workers <= 0: in the caller's thread). The consumer decides what an exception
  means (a stage lists the item in its errors file)."""

  def call(item):
    try:
      return fn(item)
    except Exception as e:  # handed to the consumer
      return e

  if workers <= 0:
    for item in items:
      yield item, call(item)
    return
  with futures.ThreadPoolExecutor(workers) as pool:
    queue = collections.deque()
    for item in items:
      queue.append((item, pool.submit(call, item)))
      if len(queue) >= lookahead:
        it, fut = queue.popleft()
        yield it, fut.result()
    while queue:
      it, fut = queue.popleft()
      yield it, fut.result()


def prefetch(items: Iterable[Any], depth: int = 2) -> Iterator[Any]:
  """`items`, each produced on one background thread up to `depth` ahead; its exceptions are re-raised here.

  This is `map_ahead` with one worker that advances the iterator (one worker: a generator is never
  advanced from two threads at once)."""
  it = iter(items)
  for _, item in map_ahead(lambda _: next(it), itertools.count(), workers=1, lookahead=depth):
    if isinstance(item, StopIteration):
      return
    if isinstance(item, Exception):
      raise item
    yield item


def describe_error(e: Exception, expected: tuple = ()) -> str:
  """An item's failure as a one-line reason (errors.jsonl, predict's report): the expected errors speak for
  themselves, others are named by their type."""
  return str(e) if isinstance(e, tuple(expected)) else f"{type(e).__name__}: {e}"
