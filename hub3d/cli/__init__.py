"""The `hub3d` command: a thin click group; each command lives in the module of its feature area."""
import gc
import importlib
import sys
import warnings

import click

EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell convention

# Commands whose module is costly to import, loaded only when run: `hub3d train` builds its options from the
# training config, which imports the training engine (torch.utils.data, the inference engine, the decoder).
# `hub3d --help` lists them with the short help kept here; tests/test_defects_config checks it against the command's.
LAZY_COMMANDS = {"train": ("hub3d.cli.train", "Train or fine-tune a model (Hara et al.'s recipe; every knob a flag).")}


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as one line, `warning: ...`, above any progress bar: never Python's source-line dump."""
    from tqdm import tqdm

    tqdm.write(f"warning: {message}", file=file or sys.stderr)


class _Group(click.Group):
    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx, name):
        if name in LAZY_COMMANDS and name not in self.commands:
            for command in importlib.import_module(LAZY_COMMANDS[name][0]).COMMANDS:
                self.add_command(command)
        return super().get_command(ctx, name)

    def format_commands(self, ctx, formatter):
        """click's command list, except that a lazy command not loaded yet shows its kept short help."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        rows = []
        for name in names:
            if name in LAZY_COMMANDS and name not in self.commands:
                rows.append((name, click.utils.make_default_short_help(LAZY_COMMANDS[name][1], limit)))
            elif not self.commands[name].hidden:
                rows.append((name, self.commands[name].get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

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
    from . import demo, export, hub, predict, render, zoo

    for module in (zoo, predict, demo, hub, export, render):
        for command in module.COMMANDS:
            main.add_command(command)


_add_commands()


def console():
    """The `hub3d` console script and `python -m hub3d`: the group as the whole process."""
    try:
        main()
    finally:
        # The process ends next: its last garbage collections need not walk the ~10^5 objects torch's import made
        # (measured 0.15 s of a 1.0 s `import torch` process; benchmarks/bench_startup.py).
        gc.freeze()
