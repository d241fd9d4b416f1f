"""make screenshots: PNGs of the impressions dashboard and a post's chart (tooling)."""
