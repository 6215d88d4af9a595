"""The edge worker: cameras and sensors in, alerts out."""
