"""The case pipeline: alerts in, deduplicated case events out."""
