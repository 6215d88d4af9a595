"""streetwatch: city cameras and neuron sensors to deduplicated street-management cases."""

__version__ = "0.1.0"
