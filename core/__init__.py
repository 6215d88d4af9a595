"""The bottom layer: wire records, config primitives, sites, time and Kafka plumbing.

Imports only third-party libraries. Every other package (detectors, ingest,
edge, pipeline, the ``streetwatch`` app shell) may import it; it imports none
of them (``make lint`` checks this).
"""
