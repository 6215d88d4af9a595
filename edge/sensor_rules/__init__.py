"""Sensor rules: each file holds a rule and its config (registered in :mod:`.base`'s
``SENSOR_RULES``); :mod:`.registry` lists them and :mod:`.engine` runs them per device."""
