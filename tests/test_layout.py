"""The code's layering, checked statically: no import cycles, nothing imported upward, serving apart from
labelling, and every module opening with the sentence that says its job."""

import ast
import glob
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("lanser_jax", "input_pipeline")


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
      names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
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


def test_input_pipeline_imports_only_the_io_module_from_lanser_jax():
  upward = {f"{m} imports {n}" for m, deps in _graph().items() if m.startswith("input_pipeline")
            for n in deps if n.startswith("lanser_jax") and n != "lanser_jax.fileio"}
  assert not upward, sorted(upward)


def test_serving_does_not_import_labelling():
  graph = _graph()
  serving = ("lanser_jax.inference", "lanser_jax.predict", "lanser_jax.embed")
  bad = {f"{m} imports {n}" for m in serving for n in graph[m]
         if n.startswith(("lanser_jax.labeling", "lanser_jax.offline"))}
  assert not bad, sorted(bad)


def test_every_module_opens_with_its_job():
  missing = [os.path.relpath(p, REPO) for p in _modules().values()
             if os.path.getsize(p) and not ast.get_docstring(ast.parse(open(p).read()))]
  assert not missing, missing
