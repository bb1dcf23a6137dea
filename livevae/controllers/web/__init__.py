"""The browser control surface: static files livevae serves itself (no build step, nothing from a CDN)."""
