"""The pieces of ``thin repair``'s salvage (:mod:`forensics.thin.repair` puts them together):
the superblock values of the copy (:mod:`.superblock`), the node scan that finds trees without a
superblock (:mod:`.scan`), the readable trees (:mod:`.trees`) and the devices assembled from
them (:mod:`.devices`).
"""
