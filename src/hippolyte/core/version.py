"""The version every layer names (User-Agent, descriptors, --version)."""

__version__ = "0.1.0"
