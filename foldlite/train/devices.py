"""Devices for data-parallel training: processes (``jax.distributed``), the device mesh, and
placing the state and the batches on it.

A 1-D device mesh with axis ``'data'`` spans every device of every process. Each global batch
``[B, ...]`` is sharded along ``'data'``; the training state (params, optimiser state, EMA) is
replicated. ``jax.jit`` of the step then computes each example's gradient on the device that
holds it and inserts the cross-device mean of the gradients. ``B`` must be a multiple of the
number of devices and of processes; every process loads only its own ``B / P`` examples
(``jax.make_array_from_process_local_data``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import numpy as np

from foldlite.errors import ConfigError


def initialize_distributed(coordinator: str | None, num_processes: int | None,
                           process_id: int | None) -> None:
    """Join a multi-process run through ``jax.distributed`` (no-op for a single process).

    On CPU the collectives use gloo. Must run before anything touches a device.
    """
    coordinator = coordinator or os.environ.get("FOLDLITE_COORDINATOR")
    if not coordinator:
        return
    num_processes = int(num_processes or os.environ.get("FOLDLITE_NUM_PROCESSES", 1))
    process_id = int(process_id if process_id is not None
                     else os.environ.get("FOLDLITE_PROCESS_ID", 0))
    if jax.config.jax_platforms in (None, "", "cpu") or os.environ.get("JAX_PLATFORMS") == "cpu":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)


def make_mesh() -> jax.sharding.Mesh:
    """A 1-D mesh ``('data',)`` over every device of every process."""
    return jax.sharding.Mesh(np.asarray(jax.devices()), ("data",))


def replicate(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """Host values -> global arrays replicated on every device (same value on every process)."""
    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])
    return jax.tree_util.tree_map(put, jax.device_get(tree))


def shard_batch(local: dict, sharding: jax.sharding.Sharding, global_batch: int) -> dict:
    """This process's examples ``[B / P, ...]`` -> global arrays ``[B, ...]`` over ``'data'``."""
    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_process_local_data(sharding, x,
                                                      (global_batch,) + x.shape[1:])
    return jax.tree_util.tree_map(put, local)


def to_host(tree: Any) -> Any:
    """Replicated global arrays -> numpy (works when other processes hold devices too)."""
    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(x.addressable_data(0))
        return np.asarray(jax.device_get(x))
    return jax.tree_util.tree_map(get, tree)


@dataclasses.dataclass(frozen=True)
class DataParallel:
    """Data-parallel placement: the mesh over every device of every process, the replicated
    sharding of the state and the ``'data'`` sharding of global batches of ``batch_size``."""

    mesh: jax.sharding.Mesh
    replicated: jax.sharding.NamedSharding
    batch_sharding: jax.sharding.NamedSharding
    batch_size: int

    @classmethod
    def create(cls, batch_size: int) -> "DataParallel":
        """Over ``make_mesh()``; ``ConfigError`` unless ``batch_size`` is a multiple of the
        number of devices and of processes."""
        mesh = make_mesh()
        n_dev = mesh.devices.size
        if batch_size % n_dev:
            raise ConfigError(f"data.batch_size={batch_size} is not a multiple of the "
                              f"{n_dev} devices; use a multiple")
        if batch_size % jax.process_count():
            raise ConfigError(f"data.batch_size={batch_size} is not a multiple of the "
                              f"{jax.process_count()} processes")
        P = jax.sharding.PartitionSpec
        return cls(mesh, jax.sharding.NamedSharding(mesh, P()),
                   jax.sharding.NamedSharding(mesh, P("data")), batch_size)

    @property
    def num_devices(self) -> int:
        return int(self.mesh.devices.size)

    @property
    def device_ids(self) -> tuple[int, ...]:
        return tuple(d.id for d in self.mesh.devices.flat)

    def replicate(self, tree: Any) -> Any:
        """Host values -> arrays replicated on every device."""
        return replicate(tree, self.replicated)

    def shard_batch(self, local: dict) -> dict:
        """This process's examples -> the global batch ``[batch_size, ...]``."""
        return shard_batch(local, self.batch_sharding, self.batch_size)
