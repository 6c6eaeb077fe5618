"""Where weights come from: bundled, hub3d's cache, a dropped original file, the Hugging Face Hub, the URL.

This module only finds and fetches files: it never builds a model (converting an original file into the cache
is hub3d.loader's job). ``locate_weights(model, cfg)`` tries, in order, and returns the first hit: a hub3d
directory (config.json + model.safetensors) or a verified original file that the loader converts once:

1. weights bundled in the package: ``hub3d/weights/{model}.{tag}/``;
2. hub3d's cache: ``{cache_dir()}/{model}.{tag}/`` (what ``hub3d convert`` and earlier loads wrote);
3. an original file dropped into the cache (``{cache_dir()}/{cfg.file}``): checked against cfg.sha256 when
   known (the loader converts it once into (2));
4. the Hugging Face Hub (``cfg.hf_hub_id``, default ``hub3d/{model}.{tag}``) through huggingface_hub, so its
   cache, ``HF_HUB_OFFLINE``, tokens and ``HF_ENDPOINT`` behave as users expect; a cached copy is used without
   any request; the blob just downloaded is checked against the hash the Hub sent as its ETag;
5. ``cfg.url``: downloaded with a progress bar into ``{cache}/{file}.part`` (resumed with an HTTP Range request
   after an interruption), sha256-checked, then renamed into place (the loader converts it into (2)). Where the
   publisher gives no hash (PyTorchVideo), the first complete download's sha256 is recorded in
   ``{cache}/{file}.sha256`` and later downloads and dropped copies are checked against it;
6. otherwise :class:`WeightsNotFoundError`, naming the original file, where it lives and the one command that
   finishes the job.

Nothing here imports huggingface_hub (or tqdm) until a source needs it.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import sys
from importlib import resources
from pathlib import Path
from typing import Optional, Union

from .checkpoint import CONFIG_NAME, WEIGHTS_NAME
from .errors import ChecksumError, DownloadError, WeightsNotFoundError
from .pretrained import PretrainedCfg
from .version import __version__

HF_PREFIX = "hf-hub:"
HF_ORG = "hub3d"  # the organisation of hub3d's own converted repos (override: HUB3D_HF_ORG)
CHUNK = 1 << 20
_HEX = re.compile(r"[0-9a-f]+")

PathLike = Union[str, os.PathLike]


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


def converted_dir(model_name: str, tag: str) -> Path:
    """Where a tag's converted weights live in hub3d's cache: {cache_dir()}/{model}.{tag}/."""
    return cache_dir() / weights_key(model_name, tag)


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


def locate_weights(model_name: str, cfg: PretrainedCfg, progress: bool = True) -> Path:
    """The local file of one tag: a hub3d directory, or a verified original file still to be converted.

    Processes that ask for the same tag at once (e.g. every rank of a torchrun job) take turns on
    :func:`weights_lock`: one downloads, the others then find the file in the cache.
    """
    bundled = bundled_dir(model_name, cfg.tag)
    if is_hub3d_dir(bundled):
        return bundled
    converted = converted_dir(model_name, cfg.tag)
    if is_hub3d_dir(converted):
        return converted
    with weights_lock(model_name, cfg.tag):
        if is_hub3d_dir(converted):  # another process made it while this one waited
            return converted
        return _locate_locked(model_name, cfg, converted, progress)


def _locate_locked(model_name: str, cfg: PretrainedCfg, converted: Path, progress: bool) -> Path:
    cache = converted.parent
    if cfg.release == "bundled":
        tried = [f"bundled: no {bundled_dir(model_name, cfg.tag)} (the package data is missing: reinstall hub3d)"]
        filename = None
    else:
        tried = [f"hub3d cache: no {converted}"]
        filename = original_file_name(cfg)
    original = cache / filename if filename else None
    expected = known_sha256(cfg, original)
    if original is not None and original.is_file():
        if expected:
            _check_known(original, expected, cfg, original)
        return original
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
                path = download_url(cfg.url, original, sha256=expected, progress=progress)
            except DownloadError as e:
                tried.append(f"URL: {e}")
            except ChecksumError as e:
                raise ChecksumError(str(e) + _recorded_note(cfg, original)) from None
            else:
                if not expected:  # an unpublished hash: trust this first complete download, check later ones
                    record_sha256(original, sha256_file(path))
                return path
    raise WeightsNotFoundError(not_found_message(model_name, cfg, tried))


def weights_lock(model_name: str, tag: str):
    """An inter-process lock on one tag's entry in the cache (held while it is downloaded or converted)."""
    return _lock(cache_dir() / ".locks" / f"{weights_key(model_name, tag)}.lock")


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


# ---------------------------------------------------------------------------------------------------------
# Hashes.


def sha256_file(path: PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


HASH_INDEX = "sha256-index.json"  # in cache_dir(): {realpath: [size, mtime_ns, sha256]}


def cached_sha256(path: PathLike) -> str:
    """sha256 of a file, remembered per (realpath, size, mtime_ns) in the cache's hash index.

    Hashing a 250 MB checkpoint costs ~0.7 s, as much as reading it; a file already seen with the same size and
    modification time is not hashed again. A changed file (any of the three differs) is rehashed. The index is
    a convenience: unreadable, or not writable, it is ignored.
    """
    import json

    from .io import write_json

    real = os.path.realpath(path)
    st = os.stat(real)
    index_path = cache_dir() / HASH_INDEX
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        if not isinstance(index, dict):
            index = {}
    except (OSError, ValueError):
        index = {}
    entry = index.get(real)
    if isinstance(entry, list) and len(entry) == 3 and entry[:2] == [st.st_size, st.st_mtime_ns] \
            and isinstance(entry[2], str) and len(entry[2]) == 64 and _HEX.fullmatch(entry[2]):
        return entry[2]
    digest = sha256_file(real)
    index[real] = [st.st_size, st.st_mtime_ns, digest]
    try:
        index_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(index_path, index, indent=None)  # atomic: a concurrent writer loses an entry, never the file
    except OSError:
        pass
    return digest


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


def recorded_sha256_path(original: PathLike) -> Path:
    """Where hub3d keeps the sha256 of a release file whose publisher gives none: ``{file}.sha256`` beside it."""
    original = Path(original)
    return original.with_name(original.name + ".sha256")


def record_sha256(original: PathLike, digest: str) -> Path:
    """Record the sha256 of the first verified download of an original file (atomic write)."""
    from .io import atomic_path

    record = recorded_sha256_path(original)
    with atomic_path(record) as tmp:
        Path(tmp).write_text(digest + "\n", encoding="ascii")
    return record


def known_sha256(cfg: PretrainedCfg, original: Optional[Path]) -> Optional[str]:
    """The hash an original file must have: the published one (cfg.sha256), else the one recorded at its first
    download (PyTorchVideo publishes none), else None."""
    if cfg.sha256 or original is None:
        return cfg.sha256
    record = recorded_sha256_path(original)
    if not record.is_file():
        return None
    digest = record.read_text(encoding="ascii", errors="replace").strip().lower()
    if len(digest) != 64 or not _HEX.fullmatch(digest):
        raise ChecksumError(f"{record}: not a sha256 hex digest; delete it to record the next download's hash")
    return digest


def _recorded_note(cfg: PretrainedCfg, original: Optional[Path]) -> str:
    if cfg.sha256 or original is None:
        return ""
    return (f" (the expected hash was recorded in {recorded_sha256_path(original)} at the first download: "
            f"{cfg.release or 'the publisher'} publishes none; delete that file to trust a new download)")


def _check_known(path: Path, expected: str, cfg: PretrainedCfg, original: Path) -> None:
    try:
        check_sha256(path, expected)
    except ChecksumError as e:
        raise ChecksumError(str(e) + _recorded_note(cfg, original)) from None


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
    unreachable = None if _offline() else hub_unreachable()  # offline: huggingface_hub answers from its cache
    if unreachable:
        raise WeightsNotFoundError(f"{where} on the Hugging Face Hub: not in the Hugging Face cache and the Hub "
                                   f"cannot be reached ({unreachable}): connect to the network (or set HF_ENDPOINT "
                                   "to a mirror) and try again")
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
        reason = f"not in the Hugging Face cache and the Hub could not be reached ({str(e).splitlines()[0]})" + (
            ": offline mode (HF_HUB_OFFLINE) is on; unset it once online" if _offline() else "")
    except RemoteEntryNotFoundError:
        reason = f"not a hub3d repo ({CONFIG_NAME} and {WEIGHTS_NAME} needed, one is missing)"
    except HfHubHTTPError as e:
        reason = f"HTTP error ({str(e).splitlines()[0]})"
    raise WeightsNotFoundError(f"{where} on the Hugging Face Hub: {reason}")


def quiet_hub() -> None:
    """Silence huggingface_hub's warnings ("Retrying in 1s ...") for a quiet command (`-q`); errors still show."""
    import logging

    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)


def hub_unreachable(timeout: Optional[float] = None) -> Optional[str]:
    """Why the Hub's endpoint cannot be reached (one TCP connect, HUB3D_CONNECT_TIMEOUT seconds, default 3),
    or None when it answers: without network, huggingface_hub's retries would otherwise wait ~25 s."""
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    endpoint = urlsplit(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    timeout = timeout if timeout is not None else float(os.environ.get("HUB3D_CONNECT_TIMEOUT", "3"))
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
    except OSError as e:
        return f"{endpoint.hostname}:{port}: {e.strerror or e}"
    return None


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
        headers = {"User-Agent": f"hub3d/{__version__}", **({"Range": f"bytes={have}-"} if have else {})}
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
                    for chunk in iter(functools.partial(response.read, CHUNK), b""):
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


def _progress(total: Optional[int], initial: int, name: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
        disable=not enabled, file=sys.stderr, leave=False,
    )


_REPO_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def looks_like_hf_repo(name: str) -> bool:
    """'org/name' or 'org/name@revision' written as Hub repo ids are (the caller checks local paths first)."""
    repo = name[len(HF_PREFIX):] if name.startswith(HF_PREFIX) else name
    repo = repo.partition("@")[0]
    parts = repo.split("/")
    return len(parts) == 2 and all(_REPO_PART.fullmatch(p) and ".." not in p for p in parts)
