"""Object detector plugins. Only this package imports inference libraries."""
