"""The code's layering, checked statically: no import cycles, each role folder importing only the roles below it
(serving apart from labelling and training), and every module opening with the sentence that says its job."""

import ast
import glob
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("lanser_jax",)


def _modules():
  """{dotted module name: path} of every project module."""
  out = {}
  for package in PACKAGES:
    for path in glob.glob(os.path.join(REPO, package, "**", "*.py"), recursive=True):
      name = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
      out[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
  return out


def _module_level(tree):
  """Statements run when the module is imported: the body, and the bodies of its top-level if/try blocks, not
  function bodies (a factory's lazy import, e.g. labelers.build importing entailment, is no import cycle)."""
  todo = list(tree.body)
  while todo:
    node = todo.pop()
    yield node
    if isinstance(node, (ast.If, ast.Try)):
      todo += node.body + node.orelse + getattr(node, "finalbody", []) + [
          s for h in getattr(node, "handlers", []) for s in h.body]


def _imports(path, modules, lazy=True):
  """Project modules a file imports: everywhere in it, or (lazy=False) when it is imported."""
  found = set()
  tree = ast.parse(open(path).read(), path)
  for node in (ast.walk(tree) if lazy else _module_level(tree)):
    names = []
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      submodules = [f"{node.module}.{a.name}" for a in node.names]
      # `from package import submodule` needs the submodule; the package's __init__ only when a name is not
      # a submodule (a package importing its own submodules is no cycle).
      names = submodules + ([] if all(n in modules for n in submodules) else [node.module])
    for name in names:
      while name and name not in modules:
        name = name.rpartition(".")[0]
      if name and name.split(".")[0] in PACKAGES and name not in PACKAGES:
        found.add(name)
  return found


def _graph(lazy=True):
  modules = _modules()
  return {m: _imports(p, modules, lazy) - {m} for m, p in modules.items()}


def test_no_import_cycles():
  graph, state, cycles = _graph(lazy=False), {}, []

  def visit(m, stack):
    state[m] = "open"
    for n in sorted(graph.get(m, ())):
      if state.get(n) == "open":
        cycles.append(" -> ".join(stack[stack.index(n):] + [n]) if n in stack else f"{m} -> {n}")
      elif n not in state:
        visit(n, stack + [n])
    state[m] = "done"

  for m in sorted(graph):
    if m not in state:
      visit(m, [m])
  assert not cycles, "\n".join(cycles)


# What each role (a folder of lanser_jax, or a root module) may import from the others. Lower layers first:
# utils below everything; the audio front end, corpora, input pipeline, engine, models and labelling models
# on top of utils; the loop, the stages and serving on those; research tools, the demo and the experiment
# files on top. Serving must not need the labelling models, the stages or the training loop.
ALLOWED = {
    "utils": set(),
    "models": {"utils"},
    "corpora": {"utils"},
    "audio": {"utils", "corpora"},
    "input_pipeline": {"utils"},
    "engine": {"utils"},
    "labelers": {"engine", "utils"},  # engine: the mesh and batch sharding of asr.backend=jax
    "config_lib": set(),
    "config_checks": {"models"},  # the model names, for config.model.name
    "train": {"config_checks", "engine", "input_pipeline", "models", "utils"},
    "main": {"config_lib", "engine", "train", "utils"},
    # engine: --jax_distributed joins the runtime with training's peer watch (engine/distributed.py)
    "stages": {"audio", "config_checks", "config_lib", "corpora", "engine", "input_pipeline", "labelers", "utils"},
    "serving": {"audio", "config_lib", "corpora", "engine", "input_pipeline", "models", "utils"},
    "tools": {"audio", "config_checks", "config_lib", "corpora", "engine", "input_pipeline", "labelers", "models", "stages", "train",
              "utils"},
    "demo": {"audio", "config_lib", "corpora", "engine", "input_pipeline", "labelers", "models", "serving",
             "stages", "tools", "train", "utils"},
    "experiments": {"config_lib", "corpora", "demo", "stages", "tools", "utils"},
    "lanser_jax": {"serving"},  # the package's lazy `load`
}


def _role(module: str) -> str:
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else parts[0]


def test_every_role_imports_only_the_roles_below_it():
  graph = _graph()
  roles = {_role(m) for m in graph}
  assert roles <= set(ALLOWED), f"a role without a rule: {sorted(roles - set(ALLOWED))}"
  upward = sorted(f"{m} imports {n}" for m, deps in graph.items() for n in deps
                  if _role(n) != _role(m) and _role(n) not in ALLOWED[_role(m)])
  assert not upward, upward


def test_serving_does_not_import_labelling_or_training():
  graph = _graph()
  serving = [m for m in graph if m.startswith("lanser_jax.serving")]
  assert len(serving) >= 3
  bad = {f"{m} imports {n}" for m in serving for n in graph[m]
         if n.startswith(("lanser_jax.labelers", "lanser_jax.stages", "lanser_jax.train", "lanser_jax.tools"))}
  assert not bad, sorted(bad)


def test_every_module_opens_with_its_job():
  missing = [os.path.relpath(p, REPO) for p in _modules().values()
             if os.path.getsize(p) and not ast.get_docstring(ast.parse(open(p).read()))]
  assert not missing, missing
