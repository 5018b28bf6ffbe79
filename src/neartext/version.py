"""The package's version: one home, read by the manifest, the service and the CLI."""

__version__ = "0.1.0"
