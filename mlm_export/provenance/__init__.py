"""Provenance of an Item: source code, container, revisions, scientific references, processing software.

One module per concept; :mod:`mlm_export.provenance.item` applies them to a built Item. Nothing here imports a
framework.
"""
