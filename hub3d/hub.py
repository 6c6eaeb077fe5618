"""Where weights come from: bundled, hub3d's cache, the Hugging Face Hub, the original URL; and publishing.

``fetch_weights(model, cfg)`` tries, in order, and returns the first hit (a hub3d directory with config.json +
model.safetensors, which ``hub3d.load`` reads):

1. weights bundled in the package: ``hub3d/weights/{model}.{tag}/``;
2. hub3d's cache: ``{cache_dir()}/{model}.{tag}/`` (what ``hub3d convert`` and earlier loads wrote);
3. an original file dropped into the cache (``{cache_dir()}/{cfg.file}``): checked against cfg.sha256 when
   known, converted once into (2);
4. the Hugging Face Hub (``cfg.hf_hub_id``, default ``hub3d/{model}.{tag}``) through huggingface_hub, so its
   cache, ``HF_HUB_OFFLINE``, tokens and ``HF_ENDPOINT`` behave as users expect; a cached copy is used without
   any request; the blob just downloaded is checked against the hash the Hub sent as its ETag;
5. ``cfg.url``: downloaded with a progress bar into ``{cache}/{file}.part`` (resumed with an HTTP Range request
   after an interruption), sha256-checked, then renamed into place and converted into (2);
6. otherwise :class:`WeightsNotFoundError`, naming the original file, where it lives and the one command that
   finishes the job.

Nothing here imports huggingface_hub (or tqdm) until a source needs it.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Optional, Union

from .checkpoint import CONFIG_NAME, WEIGHTS_NAME
from .pretrained import PretrainedCfg

HF_PREFIX = "hf-hub:"
HF_ORG = "hub3d"  # the organisation of hub3d's own converted repos (override: HUB3D_HF_ORG)
README_NAME = "README.md"
CHUNK = 1 << 20
_HEX = re.compile(r"[0-9a-f]+")

PathLike = Union[str, os.PathLike]


class WeightsNotFoundError(FileNotFoundError):
    """No source has the weights; the message says which sources were tried and how to finish the job."""

    def __str__(self) -> str:  # FileNotFoundError would otherwise print the tuple of its args
        return self.args[0] if self.args else ""


class ChecksumError(ValueError):
    """A file's content differs from its known hash; the file is never loaded or kept as if good."""


class DownloadError(OSError):
    """A download failed (network, HTTP error, truncated); a partial file is kept to resume from."""


# ---------------------------------------------------------------------------------------------------------
# Places.


def cache_dir() -> Path:
    """hub3d's cache: $HUB3D_HOME, else $XDG_CACHE_HOME/hub3d, else ~/.cache/hub3d."""
    home = os.environ.get("HUB3D_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "hub3d"


def weights_key(model_name: str, tag: str) -> str:
    """'resnet3d_34.kinetics400': the name of a tag's directory in the cache and of its default Hub repo."""
    return f"{model_name}.{tag}"


def hf_repo_id(model_name: str, cfg: PretrainedCfg) -> str:
    """The Hub repo of a tag's converted weights: cfg.hf_hub_id, else {HF_ORG}/{model}.{tag}."""
    if cfg.hf_hub_id:
        return cfg.hf_hub_id
    org = os.environ.get("HUB3D_HF_ORG") or HF_ORG
    return f"{org}/{weights_key(model_name, cfg.tag)}"


def original_file_name(cfg: PretrainedCfg) -> Optional[str]:
    """The original release file of a tag: cfg.file, else the last part of cfg.url."""
    if cfg.file:
        return cfg.file
    if cfg.url:
        return cfg.url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    return None


def bundled_dir(model_name: str, tag: str) -> Path:
    """Where weights shipped inside the package live: hub3d/weights/{model}.{tag}/."""
    return Path(str(resources.files("hub3d"))) / "weights" / weights_key(model_name, tag)


def is_hub3d_dir(path: PathLike) -> bool:
    path = Path(path)
    return (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file()


def parse_hf_id(name: str) -> tuple[str, Optional[str]]:
    """'hf-hub:org/name@rev' (or 'org/name@rev') -> ('org/name', 'rev' or None)."""
    if name.startswith(HF_PREFIX):
        name = name[len(HF_PREFIX):]
    repo, _, revision = name.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ValueError(f"not a Hugging Face Hub repo id: {name!r} (expected 'org/name' or 'org/name@revision')")
    return repo, revision or None


def _offline() -> bool:
    """HF_HUB_OFFLINE (or HUB3D_OFFLINE) also keeps hub3d's own URL downloads off the network."""
    return any(os.environ.get(k, "").upper() in ("1", "ON", "YES", "TRUE") for k in ("HF_HUB_OFFLINE", "HUB3D_OFFLINE"))


# ---------------------------------------------------------------------------------------------------------
# Resolving a tag.


def fetch_weights(model_name: str, cfg: PretrainedCfg, progress: bool = True) -> Path:
    """The local hub3d directory (config.json + model.safetensors) of one tag, fetched once and verified.

    Processes that ask for the same tag at once (e.g. every rank of a torchrun job) take turns on a lock file:
    one downloads and converts, the others then find the result in the cache.
    """
    key = weights_key(model_name, cfg.tag)
    bundled = bundled_dir(model_name, cfg.tag)
    if is_hub3d_dir(bundled):
        return bundled
    cache = cache_dir()
    converted = cache / key
    if is_hub3d_dir(converted):
        return converted
    with _lock(cache / ".locks" / f"{key}.lock"):
        if is_hub3d_dir(converted):  # another process made it while this one waited
            return converted
        return _fetch_locked(model_name, cfg, converted, progress)


def _fetch_locked(model_name: str, cfg: PretrainedCfg, converted: Path, progress: bool) -> Path:
    cache = converted.parent
    if cfg.release == "bundled":
        tried = [f"bundled: no {bundled_dir(model_name, cfg.tag)} (the package data is missing: reinstall hub3d)"]
        filename = None
    else:
        tried = [f"hub3d cache: no {converted}"]
        filename = original_file_name(cfg)
    original = cache / filename if filename else None
    if original is not None and original.is_file():
        if cfg.sha256:
            check_sha256(original, cfg.sha256)
        return convert_into_cache(original, model_name, cfg.tag)
    if original is not None:
        tried.append(f"original file: no {original}")

    repo = hf_repo_id(model_name, cfg)
    try:
        return download_hf(repo, cached_first=True)
    except WeightsNotFoundError as e:
        tried.append(f"Hugging Face Hub: {e}")

    if cfg.url:
        if _offline():
            tried.append(f"URL {cfg.url}: not tried (offline mode)")
        else:
            try:
                download_url(cfg.url, original, sha256=cfg.sha256, progress=progress)
            except DownloadError as e:
                tried.append(f"URL: {e}")
            else:
                return convert_into_cache(original, model_name, cfg.tag)
    raise WeightsNotFoundError(not_found_message(model_name, cfg, tried))


def _lock(path: Path):
    from filelock import FileLock  # a dependency of huggingface_hub

    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path))


def not_found_message(model_name: str, cfg: PretrainedCfg, tried: list[str]) -> str:
    key = weights_key(model_name, cfg.tag)
    cache = cache_dir()
    lines = [f"no weights found for {model_name} tag {cfg.tag!r}. Tried:"]
    lines += [f"  - {t}" for t in tried]
    filename = original_file_name(cfg)
    if filename is None or cfg.release == "bundled":
        return "\n".join(lines)
    where = cfg.drive_folder or cfg.url
    release = f" of the {cfg.release}" if cfg.release else ""
    lines.append(
        f"The original weights are the file {filename!r}{release}"
        + (f", on Google Drive only: {cfg.drive_folder}" if cfg.drive_folder else f": {where}" if where else ".")
    )
    lines.append("Download it, then either convert it into hub3d's cache:")
    lines.append(f"  hub3d convert {filename} {cache / key} --model {model_name} --tag {cfg.tag}")
    lines.append(f"or drop it into {cache}{os.sep} (as {cache / filename}): the next load converts it once.")
    return "\n".join(lines)


def convert_into_cache(file: PathLike, model_name: str, tag: str) -> Path:
    """Convert an original checkpoint into {cache}/{model}.{tag}/, atomically (a temp dir renamed into place)."""
    from .checkpoint import convert

    final = cache_dir() / weights_key(model_name, tag)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        convert(file, tmp, model_name=model_name, tag=tag)
        if final.exists() and not is_hub3d_dir(final):
            shutil.rmtree(final)  # a leftover that was never a complete conversion
        try:
            os.replace(tmp, final)
        except OSError:
            if not is_hub3d_dir(final):  # not just another process that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


# ---------------------------------------------------------------------------------------------------------
# Hashes.


def sha256_file(path: PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def check_sha256(path: PathLike, expected: str) -> str:
    """Raise ChecksumError unless the file's sha256 is ``expected`` (full hex digest or a prefix of it)."""
    expected = expected.lower()
    actual = sha256_file(path)
    if not actual.startswith(expected):
        raise ChecksumError(
            f"{path}: sha256 mismatch: expected {expected}{'...' if len(expected) < 64 else ''}, got {actual}; "
            "the file is corrupt, truncated or not the release file"
        )
    return actual


def _git_blob_sha1(path: Path) -> str:
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_hf_file(path: PathLike) -> None:
    """Check a file of the HF cache against the ETag it is stored under (sha256 for LFS, git sha1 otherwise).

    huggingface_hub only checks sizes; a mismatch here removes the blob and its snapshot link so that the next
    call downloads it again.
    """
    path = Path(path)
    blob = path.resolve()
    name = blob.name
    if not _HEX.fullmatch(name) or len(name) not in (40, 64):
        return  # a cache without symlinks: nothing to compare with
    actual = sha256_file(blob) if len(name) == 64 else _git_blob_sha1(blob)
    if actual != name:
        blob.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        raise ChecksumError(
            f"{path}: downloaded content does not match the Hub's hash (expected {name}, got {actual}); "
            "removed it from the cache"
        )


# ---------------------------------------------------------------------------------------------------------
# The Hugging Face Hub.


def download_hf(
    repo_id: str,
    revision: Optional[str] = None,
    *,
    cached_first: bool = False,
    token: Union[None, bool, str] = None,
) -> Path:
    """Fetch a hub3d-format repo (config.json + model.safetensors) into the HF cache; return its local folder.

    ``revision`` is a branch, tag or commit. Both files come from the same commit. ``cached_first`` returns a
    cached copy without any request (hub3d's own tags: their weights never change). Errors are
    :class:`WeightsNotFoundError` naming the repo and the reason.
    """
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        from huggingface_hub.errors import RemoteEntryNotFoundError
    except ImportError:  # huggingface_hub < 1.0: the HTTP 404 of a file was EntryNotFoundError itself
        from huggingface_hub.errors import EntryNotFoundError as RemoteEntryNotFoundError

    repo_id, parsed = parse_hf_id(repo_id)  # also accepts 'hf-hub:org/name@rev'; a malformed id is a ValueError
    revision = revision or parsed
    where = f"{repo_id}" + (f"@{revision}" if revision else "")

    def get(filename: str, rev: Optional[str], local: bool) -> Path:
        return Path(hf_hub_download(repo_id, filename, revision=rev, token=token, local_files_only=local))

    if cached_first:
        try:
            config = get(CONFIG_NAME, revision, True)
            get(WEIGHTS_NAME, config.parent.name, True)
            return config.parent
        except LocalEntryNotFoundError:
            pass
    try:
        config = get(CONFIG_NAME, revision, False)
        commit = config.parent.name  # .../snapshots/<commit>/config.json: pin the weights to the same commit
        was_cached = isinstance(try_to_load_from_cache(repo_id, WEIGHTS_NAME, revision=commit), str)
        weights = get(WEIGHTS_NAME, commit, False)
        if not was_cached:
            verify_hf_file(config)
            verify_hf_file(weights)
        return config.parent
    except RepositoryNotFoundError:
        reason = "repository not found (or private: log in with `hf auth login` or pass a token)"
    except RevisionNotFoundError:
        reason = "revision not found"
    except LocalEntryNotFoundError as e:  # first: it is also an EntryNotFoundError
        reason = f"not in the Hugging Face cache and the Hub could not be reached ({str(e).splitlines()[0]})"
    except RemoteEntryNotFoundError:
        reason = f"not a hub3d repo ({CONFIG_NAME} and {WEIGHTS_NAME} needed, one is missing)"
    except HfHubHTTPError as e:
        reason = f"HTTP error ({str(e).splitlines()[0]})"
    raise WeightsNotFoundError(f"{where} on the Hugging Face Hub: {reason}")


# ---------------------------------------------------------------------------------------------------------
# Plain URLs (torchvision's weights).


def download_url(url: str, dst: PathLike, sha256: Optional[str] = None, progress: bool = True, retries: int = 3) -> Path:
    """Download ``url`` to ``dst`` through ``dst.part``: resumed after an interruption, checked, then renamed.

    A partial file stays as ``{dst}.part`` after a failure and the next call resumes it with an HTTP Range
    request (restarting from zero when the server ignores Range). A sha256 mismatch deletes the partial file and
    raises ChecksumError: ``dst`` only ever holds a verified, complete file.
    """
    import http.client
    import urllib.error
    import urllib.request

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    part = dst.with_name(dst.name + ".part")
    last_error: Optional[BaseException] = None
    for _ in range(retries):
        have = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": f"hub3d/{_version()}", **({"Range": f"bytes={have}-"} if have else {})}
        request = urllib.request.Request(url, headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=60)
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:  # the partial file is not a prefix of this file: start again
                part.unlink()
                continue
            raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            last_error = e
            continue
        with response:
            if have and response.status != 206:
                have = 0  # the server ignored the Range request: the body is the whole file
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            try:
                with open(part, "ab" if have else "wb") as f, _progress(total, have, dst.name, progress) as bar:
                    for chunk in iter(lambda: response.read(CHUNK), b""):
                        f.write(chunk)
                        bar.update(len(chunk))
            except (http.client.HTTPException, OSError) as e:
                last_error = e  # keep the partial file: the next attempt resumes it
                continue
        size = part.stat().st_size
        if total is not None and size != total:
            last_error = DownloadError(f"{url}: got {size} of {total} bytes")
            continue
        if sha256:
            try:
                check_sha256(part, sha256)
            except ChecksumError as e:
                part.unlink()
                raise ChecksumError(f"{url}: {e}") from None
        os.replace(part, dst)
        return dst
    kept = f"; {part} kept to resume from" if part.exists() else ""
    raise DownloadError(f"{url}: download failed after {retries} attempts ({last_error}){kept}")


def _version() -> str:
    from . import __version__

    return __version__


def _progress(total: Optional[int], initial: int, name: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
        disable=not enabled, file=sys.stderr, leave=False,
    )


# ---------------------------------------------------------------------------------------------------------
# Publishing.


def model_card(model, repo_id: Optional[str] = None) -> str:
    """README.md of a model's repo: HF metadata (library, pipeline, datasets, metrics, licence) + provenance.

    A model whose classes differ from the tag it was built from (a new classifier, other labels) is described as
    derived from that tag, without the tag's dataset and reported results.
    """
    from .registry import get_pretrained_cfg, is_model, list_tags

    name, cfg = model.arch_name, model.pretrained_cfg
    labels = list(model.labels)
    derived_from = None
    if is_model(name) and cfg.tag in list_tags(name):
        original = get_pretrained_cfg(name, cfg.tag)
        if original.num_classes != model.num_classes or labels != original.class_names():
            derived_from = f"{name}.{cfg.tag}"
            cfg = cfg.replace(metrics={}, dataset=None)
    named = labels != [f"class_{i}" for i in range(len(labels))]
    return card_for_cfg(name, cfg, repo_id=repo_id, arch_kwargs=model.arch_kwargs, derived_from=derived_from,
                        labels_in_config=named)


def card_for_cfg(
    model_name: str,
    cfg: PretrainedCfg,
    repo_id: Optional[str] = None,
    arch_kwargs: Optional[dict] = None,
    derived_from: Optional[str] = None,
    labels_in_config: bool = False,
) -> str:
    """The model card of one set of weights, from its PretrainedCfg alone (weights/generate.py uses this too)."""
    from huggingface_hub import ModelCardData

    datasets = cfg.dataset.split("+") if cfg.dataset else None
    data = ModelCardData(
        library_name="hub3d",
        pipeline_tag="video-classification",
        license=(cfg.license or "other").lower(),
        datasets=datasets,
        metrics=["accuracy"] if cfg.metrics else None,
        tags=["hub3d", "video-classification", "3d-cnn", model_name],
    )
    repo = repo_id or f"{HF_ORG}/{weights_key(model_name, cfg.tag)}"
    kwargs = {**cfg.arch_kwargs, **(arch_kwargs or {})}
    resize = "x".join(map(str, cfg.resize)) if isinstance(cfg.resize, (tuple, list)) else f"short side {cfg.resize}"
    lines = [
        "---",
        data.to_yaml(),
        "---",
        "",
        f"# {model_name} ({cfg.tag})",
        "",
        f"A {model_name} video classifier in hub3d format "
        f"(`config.json` + `model.safetensors`): {cfg.num_classes} classes"
        + (f", trained on {cfg.dataset}" if cfg.dataset else "") + ".",
        "",
        "```python",
        "import hub3d",
        f'model = hub3d.load("hf-hub:{repo}")',
        'print(hub3d.classify(model, "video.mp4"))',
        "```",
        "",
        "## Input and preprocessing",
        "",
        f"- clips of {cfg.clip_len} frames, {cfg.crop_size}x{cfg.crop_size} center crop after resizing ({resize}, "
        f"{cfg.interpolation})",
        f"- x = frame / 255 * {cfg.value_scale:g}; x = (x - mean) / std with mean {list(cfg.mean)}, std {list(cfg.std)}",
        f"- architecture arguments: `{kwargs}`",
        "- labels: " + (f"`{cfg.labels}`" if cfg.labels else "the names in config.json" if labels_in_config
                        else "class indices only")
        + (" (order verified against the weights)" if cfg.labels_verified else " (order not verified against the weights)"),
        "",
        "## Provenance",
        "",
        *([f"- derived from hub3d's `{derived_from}` (new classifier or labels): the results reported for those "
           "weights do not apply to this model", ] if derived_from else []),
        f"- release: {cfg.release or 'unknown'}",
        f"- original file: {cfg.file or '-'}" + (f" (sha256 {cfg.sha256})" if cfg.sha256 else ""),
    ]
    if cfg.url:
        lines.append(f"- original URL: {cfg.url}")
    if cfg.drive_folder:
        lines.append(f"- original Google Drive folder: {cfg.drive_folder}")
    if cfg.paper:
        lines.append(f"- paper: {cfg.paper}")
    lines.append(f"- licence: {cfg.license or 'unknown'}")
    if cfg.notes:
        lines += ["", cfg.notes]
    if cfg.metrics:
        lines += ["", "## Reported results", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in cfg.metrics.items()]
    if cfg.citation:
        lines += ["", "## Citation", "", "```bibtex", cfg.citation, "```"]
    return "\n".join(lines) + "\n"


def push_to_hub(
    model,
    repo_id: str,
    *,
    token: Optional[str] = None,
    private: bool = False,
    commit_message: str = "Upload hub3d model",
    revision: Optional[str] = None,
) -> str:
    """Publish a model as a hub3d repo (config.json, model.safetensors, README.md); returns the commit URL."""
    from .checkpoint import save_pretrained

    with tempfile.TemporaryDirectory(prefix="hub3d-push-") as tmp:
        save_pretrained(model, tmp)
        return upload_dir(tmp, repo_id, model_card(model, repo_id), token=token, private=private,
                          commit_message=commit_message, revision=revision)


def upload_dir(
    directory: PathLike,
    repo_id: str,
    card: str,
    *,
    token: Optional[str] = None,
    private: bool = False,
    commit_message: str = "Upload hub3d model",
    revision: Optional[str] = None,
) -> str:
    """Write README.md into a hub3d directory and upload the three files in one commit."""
    from huggingface_hub import HfApi

    directory = Path(directory)
    if not is_hub3d_dir(directory):
        raise ValueError(f"{directory}: not a hub3d model directory ({CONFIG_NAME} and {WEIGHTS_NAME} needed)")
    (directory / README_NAME).write_text(card, encoding="utf-8")
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(directory),
        allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, README_NAME],
        commit_message=commit_message,
        revision=revision,
    )
    return str(info.commit_url)


def push_path(
    file_or_dir: PathLike,
    repo_id: str,
    model_name: Optional[str] = None,
    tag: Optional[str] = None,
    **push_kwargs,
) -> str:
    """Publish an original checkpoint (converted on the way) or a hub3d directory."""
    from .checkpoint import convert, read_checkpoint
    from .loader import load

    source = Path(file_or_dir)
    with tempfile.TemporaryDirectory(prefix="hub3d-push-") as tmp:
        if source.is_dir():
            read_checkpoint(source)  # validates it is a complete hub3d directory
            for name in (CONFIG_NAME, WEIGHTS_NAME):
                shutil.copyfile(source / name, Path(tmp) / name)
        else:
            convert(source, tmp, model_name=model_name, tag=tag)
        model = load(tmp)
        return upload_dir(tmp, repo_id, model_card(model, repo_id), **push_kwargs)
