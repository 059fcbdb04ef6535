"""The version of visret, in a module of its own so that any part can read it without importing the package's
public face."""

__version__ = "0.1.0"
