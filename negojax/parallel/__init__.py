"""Device layout: the (data, fsdp, tensor) mesh, logical-axis rules, multi-process helpers."""
from negojax.parallel.mesh import make_mesh
from negojax.parallel.multihost import host_local_to_global, initialize_distributed, is_main_process
from negojax.parallel.sharding import LogicalRules

__all__ = ["LogicalRules", "host_local_to_global", "initialize_distributed", "is_main_process",
           "make_mesh"]
