"""Side-by-side measurements of the impressions record path and flush (make bench)."""
