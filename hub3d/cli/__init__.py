"""The `hub3d` command: a thin click group; each command lives in the module of its feature area."""
import sys
import warnings

import click

EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell convention


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as one line, `warning: ...`, above any progress bar: never Python's source-line dump."""
    from tqdm import tqdm

    tqdm.write(f"warning: {message}", file=file or sys.stderr)


class _Group(click.Group):
    def invoke(self, ctx):
        with warnings.catch_warnings():  # restored after the command (the CLI may run inside a test or a script)
            warnings.showwarning = _show_warning
            try:
                return super().invoke(ctx)
            except KeyboardInterrupt:
                click.echo("interrupted", err=True)
                raise click.exceptions.Exit(EXIT_INTERRUPTED) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hub3d")
def main():
    """hub3d: pretrained 3D CNN video models: classify videos, extract features, convert, publish, train."""


def _add_commands():
    from . import demo, export, hub, predict, render, train, zoo

    for module in (zoo, predict, demo, hub, train, export, render):
        for command in module.COMMANDS:
            main.add_command(command)


_add_commands()
