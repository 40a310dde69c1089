"""edgeship's version, one place (the CLI, manifests and reports read it)."""

__version__ = "0.1.0"
