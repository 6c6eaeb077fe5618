"""`hub3d push` and `hub3d download`: publishing to and fetching from the Hugging Face Hub."""
from __future__ import annotations

import click


@click.command("push")
@click.argument("source", metavar="FILE_OR_DIR", type=click.Path(exists=True))
@click.argument("repo_id")
@click.option("--model", "model_name",
              help="hub3d model name (or MODEL.TAG), when the file does not say (torchvision files).")
@click.option("--tag", help="Tag whose labels, preprocessing and card facts go with the file.")
@click.option("--private", is_flag=True, help="Create the repo as private.")
@click.option("--revision", help="Branch to push to (created if missing; default: main).")
@click.option("--token", envvar="HF_TOKEN", help="Hugging Face token (default: HF_TOKEN or `hf auth login`).")
@click.option("-m", "--message", "commit_message", default="Upload hub3d model", show_default=True)
def push_command(source, repo_id, model_name, tag, private, revision, token, commit_message):
    """Publish FILE_OR_DIR to the Hugging Face Hub repo REPO_ID.

    An original checkpoint is converted on the way; a hub3d directory is uploaded as it is. The repo gets
    config.json, model.safetensors and a model card (README.md).
    """
    from ..errors import Hub3dError
    from ..publish import push_path

    try:
        url = push_path(source, repo_id, model_name=model_name, tag=tag, token=token, private=private,
                        revision=revision, commit_message=commit_message)
    except (Hub3dError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(url)


@click.command("download")
@click.argument("model")
@click.option("--pretrained", "tag", help="Weight tag (or alias) to fetch [the tag in MODEL.TAG, else the default].")
def download_command(model, tag):
    """Fetch the weights of MODEL's tag (or of MODEL.TAG) into the cache (once, verified); print their folder."""
    from ..errors import ConfigError, Hub3dError
    from ..loader import fetch_weights
    from ..registry import get_pretrained_cfg, split_model_tag

    try:
        model, name_tag = split_model_tag(model)
        if name_tag is not None and tag not in (None, name_tag):
            raise ConfigError(f"{model}.{name_tag} names tag {name_tag!r} but --pretrained {tag} was given too")
        path = fetch_weights(model, get_pretrained_cfg(model, name_tag or tag or "default"))
    except (Hub3dError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(str(path))


COMMANDS = [push_command, download_command]
