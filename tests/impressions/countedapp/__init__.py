"""A test-only app with a model of its own to count, proving the impressions app is reusable."""
