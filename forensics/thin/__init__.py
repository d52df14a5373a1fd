"""dm-thin pool metadata read offline: the block reader, the btree walkers, the mapping and
details trees, the two space maps, and the commands built on them (check, dump, ls, extract).

The binary layouts are declared in :mod:`forensics.formats.thin`.
"""

import os

# The readers use numpy but never its BLAS: one OpenBLAS thread instead of a pool of one per core
# (starting the pool takes ~30 ms of numpy's import, on every command). A caller's choice stays.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
