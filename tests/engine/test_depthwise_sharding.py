"""The Conformer's depthwise convolution: the same layer as Flax's grouped nn.Conv, and gradients that do not
depend on the mesh (XLA once doubled its kernel gradient on data x model meshes: conformer.DepthwiseConv1D)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from lanser_jax.models import conformer
from lanser_jax.engine import sharding


@pytest.mark.parametrize("kernel_size", [7, 32])  # odd and even (SAME pads one more zero after than before)
def test_depthwise_layer_is_the_grouped_conv_it_replaces(kernel_size):
  """Same parameter names, shapes and initial values (checkpoints carry over), same outputs and gradients."""
  x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 40, 8)), jnp.float32)
  grouped = nn.Conv(8, (kernel_size,), feature_group_count=8, padding="SAME")
  ours = conformer.DepthwiseConv1D(kernel_size)
  v_grouped, v_ours = grouped.init(jax.random.key(1), x), ours.init(jax.random.key(1), x)
  jax.tree.map(np.testing.assert_array_equal, v_ours, v_grouped)
  v = jax.tree.map(lambda a: a + 0.1, v_grouped)  # a non-zero bias too
  np.testing.assert_allclose(jax.jit(ours.apply)(v, x), jax.jit(grouped.apply)(v, x), rtol=1e-5, atol=1e-5)
  grad = lambda m: jax.jit(jax.grad(lambda v, x: jnp.sum(jnp.sin(m.apply(v, x))), argnums=(0, 1)))(v, x)
  jax.tree.map(lambda p, q: np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-5), grad(ours), grad(grouped))
  bf16 = lambda m: jax.jit(m.clone(dtype=jnp.bfloat16).apply)(v, x)  # mixed precision: config.model.dtype
  assert bf16(ours).dtype == bf16(grouped).dtype == jnp.bfloat16
  np.testing.assert_allclose(np.float32(bf16(ours)), np.float32(bf16(grouped)), rtol=2e-2, atol=2e-2)


def _conv_module_grads(variables, x, keep, mesh_spec=None):
  """Gradients of a mean loss over the batch w.r.t. the conv module's parameters and its input."""
  module = conformer.ConvModule(dim=16, kernel_size=5)

  def loss(params, x):
    y, _ = module.apply({"params": params, "batch_stats": variables["batch_stats"]}, x, keep, train=True,
                        bn_train=True, mutable=["batch_stats"])  # BatchNorm on batch statistics, as in training
    return jnp.mean(jnp.sum(jnp.sin(y), axis=(1, 2)))

  if mesh_spec is None:
    return jax.device_get(jax.jit(jax.grad(loss, argnums=(0, 1)))(variables["params"], x))
  mesh = sharding.make_mesh(mesh_spec)
  data = sharding.batch_sharding(mesh)  # rows split over data, every model device sees the same rows
  params = sharding.tree_shardings(mesh, variables["params"], "tensor")  # what train.py gives this module
  grad = jax.jit(jax.grad(loss, argnums=(0, 1)), in_shardings=(params, data))
  return jax.device_get(grad(variables["params"], jax.device_put(x, data)))


@pytest.mark.multidevice
@pytest.mark.parametrize("mesh_spec", ["data=4,model=2", "data=2,model=4"])
def test_conv_module_gradients_do_not_depend_on_the_mesh(mesh_spec):
  """One forward + backward of the Conformer's conv module (padded frames, BatchNorm in training mode) on a
  data x model mesh under the `tensor` rules equals the one-device one. With the grouped nn.Conv the
  depthwise kernel's gradient came out 2x (data=4 x model=2) and 4x (data=2 x model=4) too large."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(8, 24, 16)), jnp.float32)
  keep = jnp.asarray(np.arange(24)[None] < rng.integers(10, 25, size=8)[:, None])
  variables = conformer.ConvModule(dim=16, kernel_size=5).init(jax.random.key(0), x, keep, train=False,
                                                                bn_train=False)
  (want_params, want_x), (got_params, got_x) = (_conv_module_grads(variables, x, keep),
                                                _conv_module_grads(variables, x, keep, mesh_spec))
  want, got = traverse_util.flatten_dict(want_params, sep="/"), traverse_util.flatten_dict(got_params, sep="/")
  assert float(np.max(np.abs(want["depthwise/kernel"]))) > 1e-2  # large enough for a wrong factor to show
  # The depthwise bias's gradient is 0 up to rounding (BatchNorm subtracts it again): rounding noise is
  # judged against the largest gradient, not against itself.
  atol = 1e-5 * max(float(np.max(np.abs(g))) for g in want.values())
  for path in want:
    np.testing.assert_allclose(got[path], want[path], rtol=1e-4, atol=atol, err_msg=path)
  np.testing.assert_allclose(got_x, want_x, rtol=1e-4, atol=1e-6)
