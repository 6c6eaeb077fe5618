"""`python -m hub3d.train` / `torchrun --nproc_per_node=N -m hub3d.train`: the `hub3d train` command."""
from ..cli.train import train

if __name__ == "__main__":
    train(prog_name="python -m hub3d.train")
