"""Sensor rules: each file holds a rule and its config; :mod:`.engine` runs them per device.

Kept import-free so that :mod:`ingest.device_registry` can import
:mod:`.config` without pulling in the engine.
"""
