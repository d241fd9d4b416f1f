"""make screenshots: PNGs of the impressions dashboard and a post's chart (tooling)."""

# Debian's Chromium, headless, as the browser tests and `make screenshots` run it (Playwright
# drives it through executable_path and never downloads a browser).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
