"""The (data, fsdp, tensor) device mesh, built from config sizes."""
from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import Mesh

MESH_AXES = ("data", "fsdp", "tensor")


def check_mesh_sizes(data: int, fsdp: int, tensor: int) -> dict:
    """{axis: size} if each is a positive size or -1 and at most one is -1; otherwise a one-line
    ValueError that starts with the key to change."""
    sizes = dict(zip(MESH_AXES, (data, fsdp, tensor)))
    for axis, value in sizes.items():
        if value == 0 or value < -1:
            raise ValueError(f"mesh.{axis}: {value} must be a positive size or -1 (the "
                             "remaining devices)")
    free = [axis for axis, value in sizes.items() if value == -1]
    if len(free) > 1:
        raise ValueError(f"mesh.{free[0]}: at most one of mesh.data / mesh.fsdp / mesh.tensor may "
                         "be -1")
    return sizes


def mesh_sizes(data: int, fsdp: int, tensor: int, device_count: int) -> dict:
    """{axis: size} with a size of -1 resolved to the remaining devices; a layout that does not
    fit `device_count` is a one-line ValueError that starts with the key to change."""
    sizes = check_mesh_sizes(data, fsdp, tensor)
    free = [axis for axis, value in sizes.items() if value == -1]
    known = math.prod(value for value in sizes.values() if value != -1)
    if free:
        if device_count % known:
            raise ValueError(f"mesh.{free[0]}: -1 cannot fill {device_count} devices with the "
                             f"other axes using {known}; choose mesh sizes whose product divides "
                             f"{device_count}")
        sizes[free[0]] = device_count // known
    if math.prod(sizes.values()) != device_count:
        raise ValueError(f"mesh: data*fsdp*tensor = {math.prod(sizes.values())} but "
                         f"{device_count} devices are present; make the product equal the "
                         "device count")
    return sizes


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1, devices=None) -> Mesh:
    """A (data, fsdp, tensor) mesh; one size may be -1 to take the remaining devices."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = mesh_sizes(data, fsdp, tensor, len(devices))
    return Mesh(np.asarray(devices).reshape([sizes[a] for a in MESH_AXES]), MESH_AXES)
