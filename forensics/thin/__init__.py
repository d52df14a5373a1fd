"""dm-thin pool metadata read offline: the block reader, the btree walkers, the mapping and
details trees, the two space maps, and the commands built on them (check, dump, ls, extract).

The binary layouts are declared in :mod:`forensics.formats.thin`.
"""
