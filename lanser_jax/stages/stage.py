"""The protocol of an offline stage (name, inputs, output folder, how to run one piece) and the code that runs
any stage's pieces on this process.

A stage is a module of this package holding one `Stage` subclass instance, `STAGE`, listed in
`chain.STAGES`: that file and that list entry are all a new stage needs. The stage says what it is
(`name`, `inputs`, `folder`), prepares what its pieces share (`setup`, once per process: options, the
manifest, the labeler...), writes one piece (`run_piece`, through `pieces.PieceOutputs`, so the piece
appears whole with its summary as its done-marker), and may add whole-stage outputs once every piece
exists (`finish`, process 0 only, before the pieces' errors and counts are merged).
"""

from __future__ import annotations

import os
from typing import Any

from lanser_jax.utils import fileio
from lanser_jax.stages import pieces


class Stage:
  name: str = ""  # the --stage value, the piece files' "stage" field
  inputs: tuple[str, ...] = ()  # stages whose outputs it reads
  pieced: bool = True  # False: one output written by process 0 (the manifest)

  def folder(self, config) -> str:
    """The output folder's name under the workdir."""
    return self.name

  def out_dir(self, config, workdir: str) -> str:
    return os.path.join(workdir, self.folder(config))

  def setup(self, config, workdir: str, log, **models) -> Any:
    """What every piece of this process shares; `models` are prebuilt models (tests pass fakes)."""
    raise NotImplementedError

  def run_piece(self, state: Any, piece: int, num_pieces: int) -> None:
    """Writes one piece and its summary (in = written + rejected)."""
    raise NotImplementedError

  def finish(self, state: Any) -> None:
    """Whole-stage outputs, on process 0 once every piece is complete (default: none)."""


def run(s: Stage, config, workdir: str, process: tuple[int, int], log=print, **models) -> list[int]:
  """Sets `s` up and runs this process's unfinished pieces of it (a rerun skips complete ones); returns them.
  The merge and `finish` are the chain's (chain.run_stages), once every process's pieces exist."""
  return run_pieces(s, s.setup(config, workdir, log, **models), config, workdir, process, log)


def run_pieces(s: Stage, state, config, workdir: str, process: tuple[int, int], log=print) -> list[int]:
  if not s.pieced:  # written once, by process 0; its summary.json is the done-marker
    summary_path = os.path.join(s.out_dir(config, workdir), "summary.json")
    if process[0] != 0:
      log(f"[{s.name}] process 0 writes the {s.name}; nothing to do here")
      return []
    if fileio.exists(summary_path):
      log(f"[{s.name}] {summary_path} exists: skipped")
      return []
    s.run_piece(state, 0, 1)
    return [0]
  n = config.num_pieces
  return pieces.run_pieces(s.name, s.out_dir(config, workdir), n, process,
                           lambda piece: s.run_piece(state, piece, n), log)
