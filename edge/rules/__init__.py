"""Rule plugins: each file holds a rule and its config."""
