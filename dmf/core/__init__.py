"""The base layer: facts every other package shares (seeds, ranks). It imports nothing from dmf."""
