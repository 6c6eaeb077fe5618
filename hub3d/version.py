"""hub3d's version: its own module so that setup.cfg reads it statically and submodules import it freely."""
__version__ = "0.1.0"
