"""`python -m hub3d ...` is the `hub3d` command."""
from .cli import console

console()
