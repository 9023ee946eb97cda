"""The (data, fsdp, tensor) device mesh, built from config sizes."""
from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import Mesh

MESH_AXES = ("data", "fsdp", "tensor")


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1, devices=None) -> Mesh:
    """A (data, fsdp, tensor) mesh; one size may be -1 to take the remaining devices."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = [data, fsdp, tensor]
    if sizes.count(-1) > 1:
        raise ValueError("mesh: at most one of data/fsdp/tensor may be -1")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"mesh: {len(devices)} devices are not divisible by "
                             f"fsdp*tensor*data = {known}; change mesh sizes")
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) != len(devices):
        raise ValueError(f"mesh: data*fsdp*tensor = {math.prod(sizes)} but {len(devices)} "
                         "devices are present; set mesh sizes whose product is the device count")
    return Mesh(np.asarray(devices).reshape(sizes), MESH_AXES)
