"""A local stand-in for the Hugging Face Hub and for a plain file host, for tests (127.0.0.1, no internet).

It answers what huggingface_hub 1.x/2.x calls:
- HEAD/GET ``/{org}/{name}/resolve/{revision}/{path}``: regular files answer 200 with ETag (git blob sha1),
  X-Repo-Commit and Content-Length; LFS files (.safetensors, .pth, .bin) answer 302 to a CDN URL on another
  host name ("localhost" instead of "127.0.0.1", so huggingface_hub does not follow the redirect on HEAD) with
  X-Linked-Etag (sha256) and X-Linked-Size, like huggingface.co. 404s carry X-Error-Code (RepoNotFound,
  RevisionNotFound, EntryNotFound) as the Hub's do.
- ``GET /api/models/{repo}/revision/{rev}`` (repo_info), ``POST /api/repos/create``,
  ``POST /api/models/{repo}/branch/{branch}``, ``POST /api/models/{repo}/preupload/{rev}`` (every file
  "regular") and ``POST /api/models/{repo}/commit/{rev}`` (ndjson, base64 contents), so push_to_hub works.
- ``GET /files/{name}`` and the CDN ``/cdn/{sha256}``: plain downloads with HTTP Range support.

Every request is recorded in ``server.requests`` as (method, path, headers). ``tamper`` serves other bytes for
a path (a corrupted byte); ``cut_after`` closes the connection after n bytes of a body, a number of times.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    commits: dict = field(default_factory=dict)  # commit sha -> {path: bytes}
    refs: dict = field(default_factory=dict)  # branch -> commit sha
    private: bool = False


class FakeHub:
    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.files: dict[str, bytes] = {}  # plain URL host: /files/{name}
        self.requests: list[tuple[str, str, dict]] = []
        self.tamper: dict[str, bytes] = {}  # request path (or /cdn/sha) -> bytes served instead
        self.cut_after: dict[str, list] = {}  # path -> [n_bytes, times]
        self.ignore_range = False
        self._lock = threading.Lock()
        self._counter = 0
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.cdn = f"http://localhost:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    # lifecycle
    def start(self) -> FakeHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # content
    def new_commit_sha(self) -> str:
        with self._lock:
            self._counter += 1
            return hashlib.sha1(f"commit-{self._counter}".encode()).hexdigest()

    def add_repo(self, repo_id: str, files: dict, branch: str = "main", private: bool = False) -> str:
        """Create (or add a commit to) a repo holding exactly ``files`` on ``branch``; returns the commit sha."""
        repo = self.repos.setdefault(repo_id, Repo(private=private))
        sha = self.new_commit_sha()
        repo.commits[sha] = dict(files)
        repo.refs[branch] = sha
        return sha

    def add_file(self, name: str, data: bytes) -> str:
        self.files[name] = data
        return f"{self.endpoint}/files/{name}"

    def repo_files(self, repo_id: str, revision: str = "main") -> dict:
        repo = self.repos[repo_id]
        return repo.commits[repo.refs.get(revision, revision)]

    # bookkeeping
    def count(self, method: str = None, contains: str = "") -> int:
        return sum(1 for m, p, _ in self.requests if (method is None or m == method) and contains in p)

    def reset_counts(self) -> None:
        self.requests.clear()


class _Handler(BaseHTTPRequestHandler):
    server_hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output clean
        pass

    # ------------------------------------------------------------------ plumbing
    def _record(self):
        self.server_hub.requests.append((self.command, self.path, dict(self.headers)))

    def _send(self, status: int, headers: dict = None, body: bytes = b"", head: bool = False):
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _json(self, obj, status: int = 200):
        self._send(status, {"Content-Type": "application/json"}, json.dumps(obj).encode())

    def _error(self, status: int, code: str, message: str, head: bool = False, extra: dict = None):
        body = json.dumps({"error": message}).encode()
        headers = {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}
        headers.update(extra or {})
        self._send(status, headers, body, head=head)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _serve_bytes(self, key: str, data: bytes, head: bool, extra: dict = None):
        """A plain file answer, honouring Range, tampering and simulated connection cuts."""
        hub = self.server_hub
        data = hub.tamper.get(key, data)
        start, status = 0, 200
        rng = self.headers.get("Range")
        headers = {"Accept-Ranges": "bytes", **(extra or {})}
        if rng and not hub.ignore_range:
            m = re.fullmatch(r"bytes=(\d+)-", rng.strip())
            start = int(m.group(1)) if m else 0
            if start >= len(data):
                return self._send(416, {"Content-Range": f"bytes */{len(data)}"}, head=head)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        cut = hub.cut_after.get(key)
        if cut and cut[1] > 0 and not head:
            cut[1] -= 1
            self.send_response(status)
            for k, v in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body[: cut[0]])
            self.wfile.flush()
            self.close_connection = True
            return
        self._send(status, headers, body, head=head)

    # ------------------------------------------------------------------ routes
    def do_HEAD(self):
        self._record()
        self._route(head=True)

    def do_GET(self):
        self._record()
        self._route(head=False)

    def do_POST(self):
        self._record()
        path = urlsplit(self.path).path
        body = self._body()
        hub = self.server_hub
        if path == "/api/repos/create":
            payload = json.loads(body)
            repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
            if repo_id in hub.repos:
                return self._send(409, {"Content-Type": "application/json"}, json.dumps(  # the Hub's answer
                    {"error": "You already created this model repo", "url": f"{hub.endpoint}/{repo_id}"}).encode())
            hub.add_repo(repo_id, {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"},
                         private=payload.get("visibility") == "private")
            return self._json({"url": f"{hub.endpoint}/{repo_id}", "name": repo_id})
        if path == "/api/validate-yaml":  # the Hub parses a README's YAML front matter before accepting it
            import yaml

            content = json.loads(body)["content"]
            parts = content.split("---", 2)
            try:
                meta = yaml.safe_load(parts[1]) if content.startswith("---") and len(parts) == 3 else None
            except yaml.YAMLError as e:
                meta = str(e)
            if not isinstance(meta, dict):
                return self._send(400, {"Content-Type": "application/json"}, json.dumps(
                    {"errors": [{"message": f"invalid or missing YAML metadata: {meta!r}"}]}).encode())
            return self._json({"warnings": []})
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(preupload|commit|branch)/(.+)", path)
        if not m:
            return self._error(404, "NotFound", f"no route {path}")
        repo_id, action, rev = m.group(1), m.group(2), unquote(m.group(3))
        repo = hub.repos.get(repo_id)
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found")
        if action == "branch":
            if rev in repo.refs:
                return self._error(409, "BranchExists", "branch already exists")
            repo.refs[rev] = repo.refs["main"]
            return self._json({})
        if rev not in repo.refs:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        if action == "preupload":
            files = json.loads(body)["files"]
            return self._json({"files": [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None} for f in files
            ]})
        # commit: ndjson lines {"key": "header"|"file"|"deletedFile", "value": {...}}
        files = dict(repo.commits[repo.refs[rev]])
        for line in body.splitlines():
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "file":
                content = value["content"]
                files[value["path"]] = base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
            elif item["key"] == "deletedFile":
                files.pop(value["path"], None)
            elif item["key"] != "header":
                return self._error(400, "BadRequest", f"unsupported commit operation {item['key']}")
        sha = hub.new_commit_sha()
        repo.commits[sha] = files
        repo.refs[rev] = sha
        return self._json({"commitUrl": f"{hub.endpoint}/{repo_id}/commit/{sha}", "commitOid": sha,
                           "pullRequestUrl": None, "success": True})

    def _route(self, head: bool):
        hub = self.server_hub
        path = unquote(urlsplit(self.path).path)
        if path.startswith("/files/"):
            name = path[len("/files/"):]
            if name not in hub.files:
                return self._send(404, head=head)
            return self._serve_bytes(path, hub.files[name], head)
        if path.startswith("/cdn/"):
            sha = path[len("/cdn/"):]
            for repo in hub.repos.values():
                for files in repo.commits.values():
                    for data in files.values():
                        if hashlib.sha256(data).hexdigest() == sha:
                            return self._serve_bytes(path, data, head)
            return self._send(404, head=head)
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/(.+)", path)
        if m:
            repo = hub.repos.get(m.group(1))
            if repo is None:
                return self._error(404, "RepoNotFound", "Repository not found", head)
            sha = repo.refs.get(m.group(2), m.group(2))
            if sha not in repo.commits:
                return self._error(404, "RevisionNotFound", "Invalid rev id", head)
            return self._json({"id": m.group(1), "modelId": m.group(1), "sha": sha, "private": repo.private,
                               "siblings": [{"rfilename": f} for f in sorted(repo.commits[sha])]})
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if not m:
            return self._error(404, "NotFound", f"no route {path}", head)
        repo_id, rev, filename = m.groups()
        repo = hub.repos.get(repo_id)
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found", head)
        sha = repo.refs.get(rev, rev)
        if sha not in repo.commits:
            return self._error(404, "RevisionNotFound", "Invalid rev id", head)
        files = repo.commits[sha]
        if filename not in files:
            return self._error(404, "EntryNotFound", "Entry not found", head, {"X-Repo-Commit": sha})
        data = files[filename]
        if filename.endswith(LFS_SUFFIXES):
            digest = hashlib.sha256(data).hexdigest()
            return self._send(302, {
                "Location": f"{hub.cdn}/cdn/{digest}",
                "X-Repo-Commit": sha,
                "X-Linked-Etag": f'"{digest}"',
                "X-Linked-Size": str(len(data)),
                "ETag": f'"{git_blob_sha1(data)}"',
            }, head=head)
        extra = {"X-Repo-Commit": sha, "ETag": f'"{git_blob_sha1(data)}"'}
        return self._serve_bytes(path, data, head, extra)


# ------------------------------------------------------------------------------------------------------------
# pytest fixtures and helpers shared by test_hub.py and test_hubconf.py.

import pytest  # noqa: E402

TINY = {"widen_factor": 0.125}  # resnet3d_18 with stages of 8..64 channels: a few hundred KB


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """A started FakeHub; huggingface_hub pointed at it (endpoint, a fresh HF cache, online) and HUB3D_HOME
    set to a fresh folder."""
    from huggingface_hub import constants

    server = FakeHub().start()
    monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # huggingface_hub's own side files (agent registry, xet cache) go to the test's folder too.
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "hf_home" / ".agent_harnesses.json"), raising=False)
    monkeypatch.setattr(constants, "HF_XET_CACHE", str(tmp_path / "hf_home" / "xet"), raising=False)
    monkeypatch.setenv("HF_XET_CACHE", str(tmp_path / "hf_home" / "xet"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HUB3D_OFFLINE", raising=False)
    monkeypatch.delenv("HUB3D_HF_ORG", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_fake_test_token")  # never read a real token from this machine
    monkeypatch.setenv("HUB3D_HOME", str(tmp_path / "hub3d_home"))
    for var in ("NO_PROXY", "no_proxy"):  # a CI proxy must not see the local server
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    try:
        yield server
    finally:
        server.stop()


def set_offline(monkeypatch, offline: bool = True) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")


def patch_tag(monkeypatch, name: str, tag: str, **changes):
    """Replace one registered tag's PretrainedCfg for the test (e.g. a url on the fake server, tiny arch)."""
    from hub3d import registry

    cfg = registry._pretrained_cfgs[name][tag].replace(**changes)
    monkeypatch.setitem(registry._pretrained_cfgs[name], tag, cfg)
    return cfg


def tiny_tag_model(name: str = "resnet3d_18", tag: str = "kinetics400", seed: int = 0):
    """A model built as the (patched) tag describes, with random weights fixed by ``seed``."""
    import torch

    import hub3d

    torch.manual_seed(seed)
    return hub3d.create_model(name, pretrained_cfg=hub3d.get_pretrained_cfg(name, tag)).eval()
