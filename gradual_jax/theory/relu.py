"""The dying-ReLU toy: one ReLU unit fitted by GD while its target turns, abrupt against gradual.

It pictures the tracking corollary's failure case (see :mod:`gradual_jax.theory.tracking`) on a
landscape that is not convex: one abrupt jump of the target leaves the region where GD makes
progress, the unit dies (its pre-activation is ≤ 0 on every input, so its gradient is 0) and the
loss stays where the jump put it; the same turn in small jumps keeps the unit alive.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gradual_jax.envs import schedules
from gradual_jax.theory.tracking import in_float64


def relu_unit(theta: jax.Array, x: jax.Array) -> jax.Array:
    """y = w·relu(a·x + b) with θ = (w, a, b)."""
    w, a, b = theta
    return w * jax.nn.relu(a * x + b)


def relu_toy_path(x: jax.Array, theta0: jax.Array, target_a: float, target_b: float, w0: float, w1: float,
                  num_stages: int, steps_per_stage: int, eta: float):
    """GD on ½·mean (relu_unit(θ, x) - w*_s·relu(a*x + b*))² while the target's output weight
    moves w₀ → w₁ in ``num_stages`` equal jumps (1 stage: abrupt). Returns the final θ and the
    loss against the current target before every step: [stages·steps]."""
    def loss(theta, w_target):
        target = relu_unit(jnp.stack([w_target, target_a, target_b]), x)
        return 0.5 * jnp.mean(jnp.square(relu_unit(theta, x) - target))

    def stage(theta, s):
        w_target = w0 + (s / num_stages) * (w1 - w0)

        def step(theta, _):
            value, grad = jax.value_and_grad(loss)(theta, w_target)
            return theta - eta * grad, value

        return jax.lax.scan(step, theta, None, length=steps_per_stage)

    theta, losses = jax.lax.scan(stage, theta0, jnp.arange(1, num_stages + 1))
    return theta, losses.reshape(-1)


@in_float64
def relu_toy(deltas: Sequence[float], *, total_steps: int = 1000, eta: float = 1.0, w0: float = 1.0,
             w1: float = -1.0, target_a: float = 1.0, target_b: float = 0.5, num_inputs: int = 41) -> list[dict]:
    """One ReLU unit fitted by GD while the target's output weight turns from w₀ to w₁.

    Inputs: ``num_inputs`` points on [-1, 1]. The unit starts at the target (w₀, a*, b*). Every
    arm trains ``total_steps`` steps, in 1/Δ stages (Δ = 1: abrupt). The abrupt jump makes a huge
    error whose first gradient step pushes a·x + b below 0 on every input: the unit is dead,
    its gradient is 0 from then on and the loss stays. Small jumps keep the error small and the
    unit alive, and it follows the target to w₁. Per Δ: final loss on the final target, the
    largest pre-activation over inputs (≤ 0: dead), and the loss curve.
    """
    for delta in deltas:
        if total_steps % schedules.one_over(float(delta)):
            raise ValueError(f"1/Δ = {1.0 / delta:g} must divide total_steps = {total_steps}")
    x = jnp.linspace(-1.0, 1.0, num_inputs)
    theta0 = jnp.array([w0, target_a, target_b])
    rows = []
    for delta in deltas:
        stages = schedules.one_over(float(delta))
        theta, losses = relu_toy_path(x, theta0, target_a, target_b, w0, w1, stages, total_steps // stages, eta)
        target = relu_unit(jnp.array([w1, target_a, target_b]), x)
        final = 0.5 * jnp.mean(jnp.square(relu_unit(theta, x) - target))
        pre = float(jnp.max(theta[1] * x + theta[2]))
        rows.append(dict(delta=delta, final_loss=float(final), max_preactivation=pre, dead=pre <= 0.0,
                         theta=np.asarray(theta), losses=np.asarray(losses)))
    return rows
