"""Repair: findings → a plan of actions → journal + quarantine → apply / undo.

:mod:`~forensics.repair.plan` decides (reading only), :mod:`~forensics.repair.apply` carries a
plan out and :mod:`~forensics.repair.undo` reverses it, both through
:mod:`~forensics.repair.journal`; :mod:`~forensics.repair.safety` says whether anything uses
ROOT. Only apply and undo write, and only by renames inside ROOT and the quarantine.
"""
