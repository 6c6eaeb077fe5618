"""The `hub3d` command: a thin click group; each command lives in the module of its feature area."""
import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hub3d")
def main():
    """hub3d: pretrained 3D CNN video models: classify videos, extract features, convert, publish, train."""


def _add_commands():
    from . import demo, hub, predict, train, zoo
    from . import export, render

    for module in (zoo, predict, demo, hub, train, export, render):
        for command in module.COMMANDS:
            main.add_command(command)


_add_commands()
