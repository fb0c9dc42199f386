"""A local Hugging Face Hub-compatible endpoint, for tests: the real `huggingface_hub` and `datasets` clients push to
it and load from it over HTTP (127.0.0.1, ephemeral port), with `HF_ENDPOINT` pointing at it.

It implements what those clients call for dataset/model repos, kept in memory:

    POST /api/repos/create                              create a repo (409 if it exists)
    POST /api/validate-yaml                             README metadata check (YAML must parse)
    GET  /api/{type}s/{id}[/revision/{rev}]             repo info (sha, siblings)
    GET  /api/{type}s/{id}/tree/{rev}[/{path}]          tree listing (?recursive=1)
    POST /api/{type}s/{id}/paths-info/{rev}             info on given paths
    GET  /api/{type}s/{id}/commits/{rev}                commit history
    GET  /api/{type}s/{id}/refs                         branches
    POST /api/{type}s/{id}/branch/{branch}              create a branch
    POST /api/{type}s/{id}/preupload/{rev}              upload mode per file: "lfs" (binary) or "regular"
    POST /{type}s/{id}.git/info/lfs/objects/batch       LFS batch (basic transfer) + PUT upload + verify
    POST /api/{type}s/{id}/commit/{rev}                 NDJSON commit (file, lfsFile, deletedFile, deletedFolder;
                                                        ?create_pr=1 opens refs/pr/N)
    HEAD|GET /{type}s/{id}/resolve/{rev}/{path}         downloads, with Range, ETag and X-Repo-Commit

Binary files go through LFS, not Xet: the client must be told not to use Xet (`HF_HUB_DISABLE_XET=1`, which
`hub_environment` sets). Refusals are switchable: `server.refuse(403, on="write")`.

    with HubServer() as hub, hub_environment(hub, tmp_path):
        HfApi().create_repo("me/data", repo_type="dataset")   # token: hub.token
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import yaml
from aiohttp import web

from speakrl_testing import ThreadedServer

LFS_SUFFIXES = (".parquet", ".arrow", ".png", ".jpg", ".bin", ".safetensors", ".gz", ".zip", ".zst")
WRITE_ENDPOINTS = {"create", "preupload", "lfs", "commit", "branch"}


def git_blob_oid(data: bytes) -> str:
    """The git blob sha1, which the Hub reports as a regular file's oid (and the client compares against)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Entry:
    size: int
    oid: str  # git blob oid (of the LFS pointer for LFS files)
    sha256: str | None = None  # LFS files: the content address in the object store
    blob: str = ""  # key into HubServer.blobs

    def lfs(self) -> bool:
        return self.sha256 is not None


@dataclass
class Commit:
    oid: str
    parent: str | None
    files: dict[str, Entry]
    title: str
    message: str
    date: str


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    refs: dict[str, str] = field(default_factory=dict)  # branch or refs/pr/N -> commit oid
    commits: dict[str, Commit] = field(default_factory=dict)
    prs: int = 0


class HubServer(ThreadedServer):
    """An in-memory Hub on 127.0.0.1 in a background thread. `token` is the only write token it accepts."""

    thread_name = "hub-server"

    def __init__(self, token: str | None = None, user: str = "tester") -> None:
        super().__init__()
        self.token = token or "hf_" + secrets.token_hex(16)
        self.user = user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.blobs: dict[str, bytes] = {}  # git oid (regular) or sha256 (LFS) -> content
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, for tests
        self.bodies: list[bytes] = []  # every request body received, for tests (e.g. no token in uploads)
        self._refusals: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()

    # ---------------------------------------------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def web_app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    # ------------------------------------------------------------------------------------------------ test controls

    def refuse(self, status: int, on: str = "write", message: str | None = None) -> None:
        """Answer `status` to requests of kind `on`: "write" (create, preupload, lfs, commit, branch), "all",
        or one endpoint name (create, preupload, lfs, commit, branch, info, tree, paths-info, resolve; lfs-upload and
        lfs-verify for the object store behind the LFS batch answer)."""
        text = message or {401: "Invalid credentials in Authorization header", 403: "You don't have the rights to write to this repo",
                           409: "A commit has happened since. Please refresh and try again."}.get(status, "refused")
        self._refusals[on] = (status, text)

    def allow(self) -> None:
        self._refusals.clear()

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> dict[str, bytes]:
        """The content of every file of a repo at a revision."""
        repo = self.repos[(repo_type, repo_id)]
        commit = repo.commits[repo.refs[revision]]
        return {path: self.blobs[e.blob] for path, e in commit.files.items()}

    def commit_count(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> int:
        repo = self.repos[(repo_type, repo_id)]
        n, oid = 0, repo.refs.get(revision)
        while oid:
            n, oid = n + 1, repo.commits[oid].parent
        return n

    # ------------------------------------------------------------------------------------------------------ routing

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        raw_path, _, query = request.raw_path.partition("?")
        self.requests.append((request.method, raw_path))
        if body:
            self.bodies.append(body)
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        parts = [unquote(p) for p in raw_path.strip("/").split("/")]
        try:
            with self._lock:
                return self._route(request, parts, params, body)
        except _HubError as e:
            return e.response()

    def _route(self, request: web.Request, parts: list[str], params: dict[str, str], body: bytes) -> web.StreamResponse:
        method = request.method
        if parts[:3] == ["api", "repos", "create"] and method == "POST":
            return self._create(request, body)
        if parts[:2] == ["api", "validate-yaml"] and method == "POST":
            return self._validate_yaml(body)
        if parts[:1] == ["_lfs"]:
            return self._lfs_object(request, parts, body)
        if len(parts) >= 3 and parts[0] == "api" and parts[1] in ("datasets", "models", "spaces"):
            repo_type, repo_id = parts[1][:-1], "/".join(parts[2:4])
            action, rest = (parts[4] if len(parts) > 4 else "info"), parts[5:]
            if action == "revision":
                action = "info"
            endpoint = {"info": "info", "tree": "tree", "paths-info": "paths-info", "commits": "info", "refs": "info",
                        "branch": "branch", "preupload": "preupload", "commit": "commit"}.get(action)
            if endpoint is None:
                raise _HubError(404, f"unknown endpoint {action!r}")
            repo = self._repo(request, repo_type, repo_id, write=endpoint in WRITE_ENDPOINTS, endpoint=endpoint)
            rev = rest[0] if rest else "main"
            if action == "info":
                return self._info(repo, rev)
            if action == "tree":
                return self._tree(repo, rev, "/".join(rest[1:]), params)
            if action == "paths-info":
                return self._paths_info(repo, rev, body)
            if action == "commits":
                return self._commits(repo, rev)
            if action == "refs":
                return web.json_response({"branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": o}
                                                       for b, o in repo.refs.items() if not b.startswith("refs/")],
                                          "converts": [], "tags": []})
            if action == "branch":
                return self._branch(repo, rev, body)
            if action == "preupload":
                return self._preupload(repo, rev, body)
            return self._commit(repo, rev, body, params)
        # /{type}s/{ns}/{name}.git/info/lfs/objects/batch and /{type}s/{ns}/{name}/resolve/{rev}/{path}
        prefix = {"datasets": "dataset", "spaces": "space"}.get(parts[0])
        repo_type = prefix or "model"
        parts = parts[1:] if prefix else parts
        if len(parts) >= 2 and parts[1].endswith(".git") and parts[2:] == ["info", "lfs", "objects", "batch"]:
            repo = self._repo(request, repo_type, f"{parts[0]}/{parts[1][:-4]}", write=True, endpoint="lfs")
            return self._lfs_batch(repo, body)
        if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
            repo = self._repo(request, repo_type, f"{parts[0]}/{parts[1]}", write=False, endpoint="resolve")
            return self._resolve(request, repo, parts[3], "/".join(parts[4:]))
        raise _HubError(404, f"no route for {method} /{'/'.join(parts)}")

    # --------------------------------------------------------------------------------------------------- auth, repos

    def _auth(self, request: web.Request) -> bool:
        """Whether the request carries the server's token; a wrong token is refused outright, as the Hub does."""
        header = request.headers.get("Authorization", "")
        if not header:
            return False
        if header != f"Bearer {self.token}":
            raise _HubError(401, "Invalid credentials in Authorization header")
        return True

    def _check_refusal(self, endpoint: str, write: bool) -> None:
        for key in (endpoint, "write" if write else None, "all"):
            if key in self._refusals:
                status, text = self._refusals[key]
                raise _HubError(status, text)

    def _repo(self, request: web.Request, repo_type: str, repo_id: str, *, write: bool, endpoint: str) -> Repo:
        self._check_refusal(endpoint, write)
        authed = self._auth(request)
        if write and not authed:
            raise _HubError(401, "You must be authenticated to write", code=None)
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not authed):
            raise _HubError(404 if authed else 401, "Repository not found", code="RepoNotFound")
        return repo

    def _create(self, request: web.Request, body: bytes) -> web.StreamResponse:
        self._check_refusal("create", True)
        if not self._auth(request):
            raise _HubError(401, "You must be authenticated to create a repo")
        payload = json.loads(body or b"{}")
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or self.user}/{payload['name']}"
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{self.url}/{prefix}{repo_id}"
        if (repo_type, repo_id) in self.repos:
            raise _HubError(409, "You already created this repo", extra={"url": url})
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        repo = Repo(repo_type, repo_id, private)
        # Like the Hub: a new repo starts with one commit holding .gitattributes.
        attrs = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n*.png filter=lfs diff=lfs merge=lfs -text\n"
        self.blobs[git_blob_oid(attrs)] = attrs
        files = {".gitattributes": Entry(len(attrs), git_blob_oid(attrs), blob=git_blob_oid(attrs))}
        first = self._new_commit(repo, None, files, "initial commit", "")
        repo.refs["main"] = first.oid
        self.repos[(repo_type, repo_id)] = repo
        return web.json_response({"url": url, "name": repo_id, "id": repo_id})

    @staticmethod
    def _validate_yaml(body: bytes) -> web.StreamResponse:
        content = json.loads(body).get("content", "")
        if content.startswith("---"):
            try:
                yaml.safe_load(content.split("---")[1])
            except yaml.YAMLError as e:
                return web.json_response({"errors": [{"message": f"invalid YAML: {e}"}], "warnings": []}, status=400)
        return web.json_response({"errors": [], "warnings": []})

    def _new_commit(self, repo: Repo, parent: str | None, files: dict[str, Entry], title: str, message: str) -> Commit:
        digest = hashlib.sha1(json.dumps([parent, title, sorted((p, e.oid) for p, e in files.items()),
                                          len(repo.commits)]).encode()).hexdigest()
        commit = Commit(digest, parent, files, title, message, datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z")
        repo.commits[digest] = commit
        return commit

    def _head(self, repo: Repo, rev: str) -> Commit:
        oid = repo.refs.get(rev) or (rev if rev in repo.commits else None)
        if oid is None:
            raise _HubError(404, f"Invalid rev id: {rev}", code="RevisionNotFound")
        return repo.commits[oid]

    # ---------------------------------------------------------------------------------------------------- reading

    def _info(self, repo: Repo, rev: str) -> web.StreamResponse:
        commit = self._head(repo, rev)
        return web.json_response({
            "_id": repo.repo_id, "id": repo.repo_id, "author": repo.repo_id.split("/")[0], "sha": commit.oid,
            "private": repo.private, "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
            "lastModified": commit.date, "createdAt": commit.date,
            "siblings": [{"rfilename": p} for p in sorted(commit.files)],
        })

    @staticmethod
    def _file_info(path: str, e: Entry) -> dict[str, Any]:
        info: dict[str, Any] = {"type": "file", "path": path, "size": e.size, "oid": e.oid}
        if e.sha256:
            info["lfs"] = {"oid": e.sha256, "size": e.size, "pointerSize": 134}
        return info

    @staticmethod
    def _folders(files: dict[str, Entry]) -> set[str]:
        return {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}

    def _tree(self, repo: Repo, rev: str, path: str, params: dict[str, str]) -> web.StreamResponse:
        commit = self._head(repo, rev)
        folders = self._folders(commit.files)
        path = path.strip("/")
        if path and path not in folders:
            raise _HubError(404, f"{path} does not exist on {rev}", code="EntryNotFound")
        recursive = params.get("recursive", "").lower() in ("1", "true")
        prefix = f"{path}/" if path else ""

        def wanted(p: str) -> bool:
            return p.startswith(prefix) and (recursive or "/" not in p[len(prefix):])

        out = [{"type": "directory", "path": f, "size": 0, "oid": hashlib.sha1(f.encode()).hexdigest()}
               for f in sorted(folders) if wanted(f)]
        out += [self._file_info(p, e) for p, e in sorted(commit.files.items()) if wanted(p)]
        return web.json_response(out)

    def _paths_info(self, repo: Repo, rev: str, body: bytes) -> web.StreamResponse:
        commit = self._head(repo, rev)
        folders = self._folders(commit.files)
        form = parse_qs(body.decode())
        out = []
        for path in form.get("paths", []):
            path = path.strip("/")
            if path in commit.files:
                out.append(self._file_info(path, commit.files[path]))
            elif path in folders:
                out.append({"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest()})
        return web.json_response(out)

    def _commits(self, repo: Repo, rev: str) -> web.StreamResponse:
        out, commit = [], self._head(repo, rev)
        while commit:
            out.append({"id": commit.oid, "title": commit.title, "message": commit.message, "date": commit.date,
                        "authors": [{"user": self.user}]})
            commit = repo.commits.get(commit.parent) if commit.parent else None
        return web.json_response(out)

    def _resolve(self, request: web.Request, repo: Repo, rev: str, path: str) -> web.StreamResponse:
        commit = self._head(repo, rev)
        entry = commit.files.get(path)
        if entry is None:
            raise _HubError(404, f"Entry not found: {path}", code="EntryNotFound", commit=commit.oid)
        data = self.blobs[entry.blob]
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{entry.oid}"', "Accept-Ranges": "bytes"}
        if entry.sha256:
            headers.update({"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": str(entry.size)})
        status, start, end = 200, 0, len(data)
        rng = request.headers.get("Range", "")
        if rng.startswith("bytes="):
            first, _, last = rng[6:].partition("-")
            start = int(first) if first else max(0, len(data) - int(last))
            end = min(len(data), int(last) + 1) if (first and last) else len(data)
            if start >= len(data) and len(data) > 0:
                raise _HubError(416, "Range not satisfiable")
            status = 206
            headers["Content-Range"] = f"bytes {start}-{max(start, end - 1)}/{len(data)}"
        chunk = data[start:end]
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(chunk))
            return web.Response(status=status, headers=headers)
        return web.Response(status=status, body=chunk, headers=headers)

    # ---------------------------------------------------------------------------------------------------- writing

    def _branch(self, repo: Repo, branch: str, body: bytes) -> web.StreamResponse:
        if branch in repo.refs:
            raise _HubError(409, f"Reference already exists: refs/heads/{branch}")
        start = (json.loads(body) if body else {}).get("startingPoint") or "main"
        repo.refs[branch] = self._head(repo, start).oid
        return web.json_response({})

    def _preupload(self, repo: Repo, rev: str, body: bytes) -> web.StreamResponse:
        files = repo.commits[repo.refs[rev]].files if rev in repo.refs else {}
        out = []
        for f in json.loads(body)["files"]:
            sample = base64.b64decode(f["sample"])
            lfs = f["path"].endswith(LFS_SUFFIXES) or f["size"] > 10_000_000 or b"\0" in sample
            existing = files.get(f["path"])
            remote = None
            if existing is not None:
                # The client compares this with its own oid to skip unchanged files: sha256 for LFS, git oid otherwise.
                remote = existing.sha256 if (lfs and existing.sha256) else (existing.oid if not lfs else None)
            out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": remote})
        return web.json_response({"files": out, "commitOid": repo.refs.get(rev)})

    def _lfs_batch(self, repo: Repo, body: bytes) -> web.StreamResponse:
        payload = json.loads(body)
        objects = []
        for obj in payload["objects"]:
            item: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.blobs:  # already stored: no actions, the client skips the upload
                item["actions"] = {
                    "upload": {"href": f"{self.url}/_lfs/upload/{obj['oid']}"},
                    "verify": {"href": f"{self.url}/_lfs/verify/{obj['oid']}"},
                }
            objects.append(item)
        return web.json_response({"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    def _lfs_object(self, request: web.Request, parts: list[str], body: bytes) -> web.StreamResponse:
        kind, oid = parts[1], parts[2]
        self._check_refusal(f"lfs-{kind}", True)  # the object store itself ("lfs-upload", "lfs-verify")
        if kind == "upload" and request.method == "PUT":
            if hashlib.sha256(body).hexdigest() != oid:
                raise _HubError(400, "uploaded content does not match its sha256")
            self.blobs[oid] = body
            return web.Response(status=200)
        if kind == "verify" and request.method == "POST":
            info = json.loads(body)
            if info.get("oid") != oid or oid not in self.blobs or len(self.blobs[oid]) != info.get("size"):
                raise _HubError(404, "object not found or wrong size")
            return web.json_response({})
        raise _HubError(404, "no such LFS action")

    def _commit(self, repo: Repo, rev: str, body: bytes, params: dict[str, str]) -> web.StreamResponse:
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next((x["value"] for x in lines if x["key"] == "header"), None)
        if header is None:
            raise _HubError(400, "commit payload has no header")
        base = self._head(repo, rev)
        if header.get("parentCommit") and header["parentCommit"] != base.oid:
            raise _HubError(409, "A commit has happened since. Please refresh and try again.")
        files = dict(base.files)
        for item in lines:
            key, value = item["key"], item.get("value", {})
            if key == "file":
                data = base64.b64decode(value["content"])
                oid = git_blob_oid(data)
                self.blobs[oid] = data
                files[value["path"]] = Entry(len(data), oid, blob=oid)
            elif key == "lfsFile":
                sha = value["oid"]
                if sha not in self.blobs:
                    raise _HubError(422, f"LFS object {sha} for {value['path']} was never uploaded")
                pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(self.blobs[sha])}\n"
                files[value["path"]] = Entry(len(self.blobs[sha]), git_blob_oid(pointer.encode()), sha, blob=sha)
            elif key == "deletedFile":
                if value["path"] not in files:
                    raise _HubError(404, f"A file with this name doesn't exist: {value['path']}", code="EntryNotFound")
                del files[value["path"]]
            elif key == "deletedFolder":
                folder = value["path"].rstrip("/") + "/"
                files = {p: e for p, e in files.items() if not p.startswith(folder)}
        commit = self._new_commit(repo, base.oid, files, header.get("summary", ""), header.get("description", ""))
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        out: dict[str, Any] = {"commitOid": commit.oid, "commitUrl": f"{self.url}/{prefix}{repo.repo_id}/commit/{commit.oid}",
                               "success": True}
        if params.get("create_pr") in ("1", "true"):
            repo.prs += 1
            repo.refs[f"refs/pr/{repo.prs}"] = commit.oid
            out["pullRequestUrl"] = f"{self.url}/{prefix}{repo.repo_id}/discussions/{repo.prs}"
        else:
            repo.refs[rev] = commit.oid
        return web.json_response(out)


class _HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, extra: dict[str, Any] | None = None,
                 commit: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.extra, self.commit = status, message, code, extra or {}, commit

    def response(self) -> web.StreamResponse:
        headers = {"X-Error-Message": self.message}
        if self.code:
            headers["X-Error-Code"] = self.code
        if self.commit:
            headers["X-Repo-Commit"] = self.commit
        return web.json_response({"error": self.message, **self.extra}, status=self.status, headers=headers)


_counter = itertools.count()


@contextmanager
def hub_environment(server: HubServer, home: Path, token: str | None = "") -> Iterator[None]:
    """Point `huggingface_hub` and `datasets` at `server`, with a fresh HF_HOME under `home`, then restore.

    Both libraries read HF_ENDPOINT (and the cache paths) once, at import, into module constants, so setting the
    environment variable is not enough in a running process: the constants are patched too. `token=""` uses the
    server's token through HF_TOKEN; None leaves no token anywhere (not even a token file).
    """
    import datasets.config as dconfig
    from huggingface_hub import constants

    home = Path(home) / f"hf_home_{next(_counter)}"
    env = {
        "HF_ENDPOINT": server.url,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_DATASETS_CACHE": str(home / "datasets"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_HUB_DISABLE_XET": "1",  # the local server speaks LFS, not Xet
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    patches: list[tuple[Any, str, Any]] = [
        (constants, "ENDPOINT", server.url),
        (constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}"),
        (constants, "HF_HOME", str(home)),
        (constants, "HF_HUB_CACHE", str(home / "hub")),
        (constants, "HF_TOKEN_PATH", str(home / "token")),
        (constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens")),
        (constants, "HF_HUB_DISABLE_XET", True),
        (constants, "HF_HUB_OFFLINE", False),
        (dconfig, "HF_ENDPOINT", server.url),
        (dconfig, "HUB_DATASETS_URL", server.url + "/datasets/{repo_id}/resolve/{revision}/{path}"),
        (dconfig, "HF_DATASETS_CACHE", home / "datasets"),
        (dconfig, "HF_HUB_OFFLINE", False),
        (dconfig, "HF_DATASETS_OFFLINE", False),
        # The parquet-export lookup would go to datasets-server.<endpoint host>: not ours, never the network.
        (dconfig, "USE_PARQUET_EXPORT", False),
    ]
    saved_env = {k: os.environ.get(k) for k in [*env, "HF_TOKEN", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"]}
    saved = [(mod, name, getattr(mod, name)) for mod, name, _ in patches]
    os.environ.update(env)
    os.environ.pop("HF_HUB_OFFLINE", None)
    os.environ.pop("HF_DATASETS_OFFLINE", None)
    if token is None:
        os.environ.pop("HF_TOKEN", None)
    else:
        os.environ["HF_TOKEN"] = token or server.token
    for mod, name, value in patches:
        setattr(mod, name, value)
    try:
        yield
    finally:
        for mod, name, value in saved:
            setattr(mod, name, value)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
