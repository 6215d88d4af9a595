"""Sources of frames (cameras, files) and of sensor readings (MQTT)."""
