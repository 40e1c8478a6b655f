"""The base layer: settings, metrics, time, privacy and code checks.

It imports nothing of the project above it; every other layer may import it."""
