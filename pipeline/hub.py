"""Push a run's dataset to the Hugging Face Hub with `huggingface_hub.HfApi`.

The token comes from the argument, `HF_TOKEN` or the standard `hf auth login` file; the endpoint from
`HF_ENDPOINT`. One commit carries the whole repo layout (`pipeline.stages.publish.build_dataset_dir`): every file
is added and remote files the new build no longer has are deleted, so a repo never mixes two builds. The client
skips files whose content the Hub already has, and a commit with nothing left is not made: re-publishing the same
run is a no-op that reports the current commit (`PushResult.changed` is False).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from speakrl.pipeline import secrets
from speakrl.pipeline.errors import PublishError
from speakrl.pipeline.io import remove_stale
from speakrl.pipeline.stages.publish import PublishOptions, build_dataset_dir, require_run

logger = logging.getLogger(__name__)

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_KEEP_REMOTE = {".gitattributes"}  # created by the Hub itself; ours to leave alone


_STAGING_PREFIX = "speakrl-publish-"


def remove_stale_staging(root: str | None = None) -> list[Path]:
    """Remove the staging copies that killed pushes left in the temp dir (their pid is in the name and no longer
    runs); a live push's copy is left alone. Returns what was removed."""
    return remove_stale(Path(root or tempfile.gettempdir()), _STAGING_PREFIX)


@dataclass
class PushResult:
    repo_id: str
    url: str  # the dataset page
    commit: str  # commit oid now at the revision (or of the pull request)
    changed: bool  # False when the Hub already had exactly this content
    pr_url: str | None = None


def check_repo_id(repo_id: str) -> str:
    """`owner/name` with the Hub's characters, or PublishError.

    >>> check_repo_id("me/SpeakER")
    'me/SpeakER'
    """
    if not _REPO_ID.match(repo_id or "") or ".." in repo_id or "--" in repo_id or repo_id.endswith((".git", ".")):
        raise PublishError(
            f"{repo_id!r} is not a valid repo id; use OWNER/NAME with letters, digits, '-', '_' or '.' (e.g. me/SpeakER)"
        )
    return repo_id


def _endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _hub_error(e: BaseException, repo_id: str, endpoint: str) -> PublishError:
    """One sentence for a failed Hub call; never echoes headers, so never the token."""
    from huggingface_hub.errors import HfHubHTTPError

    # LFS upload failures arrive wrapped ("Error while uploading ..."): look for the HTTP error underneath.
    cause: BaseException | None = e
    while cause is not None and not isinstance(cause, HfHubHTTPError):
        cause = cause.__cause__ or cause.__context__
    e = cause if isinstance(cause, HfHubHTTPError) else e
    response = getattr(e, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(e, HfHubHTTPError) and status is not None:
        detail = (getattr(e, "server_message", None) or "").strip().splitlines()
        detail_text = f" ({detail[0].rstrip('.')})" if detail else ""
        if status == 401:
            return PublishError(f"the Hub at {endpoint} rejected the token (401){detail_text}; set a valid HF_TOKEN or run `hf auth login`")
        if status == 403:
            return PublishError(f"the token may not write to {repo_id} (403){detail_text}; use a token with write access to that namespace")
        if status == 404:
            return PublishError(f"{repo_id} or its revision was not found on {endpoint} (404){detail_text}")
        if status == 409:
            return PublishError(f"the Hub refused the push to {repo_id} with a conflict (409){detail_text}; retry once the other change is done")
        return PublishError(f"the Hub at {endpoint} answered HTTP {status} for {repo_id}{detail_text}")
    name = type(e).__name__
    if "Connect" in name or "Timeout" in name or isinstance(e, OSError):
        return PublishError(f"cannot reach the Hub at {endpoint} ({name}); check HF_ENDPOINT and the network")
    return PublishError(f"pushing to {repo_id} failed: {name}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": "))


def hub_token(token: str | None = None) -> str:
    """The token to push with: `token`, else $HF_TOKEN or the saved login (`hf auth login`)."""
    from huggingface_hub.utils import get_token

    token = token or get_token()
    if not token:
        raise PublishError("no Hugging Face token found; set HF_TOKEN or run `hf auth login`")
    return token


def push(
    run_dir: Path | str,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
    token: str | None = None,
    options: PublishOptions | None = None,
) -> PushResult:
    """Build the dataset of `run_dir` and push it to dataset repo `repo_id` in one commit."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    check_repo_id(repo_id)
    require_run(Path(run_dir))  # before the token: a mistyped path is the first thing to fix
    token = hub_token(token)
    secrets.register(token)  # never in a file or a log line, whatever echoes it
    endpoint = _endpoint()
    options = options or PublishOptions()
    if options.repo_id is None:
        options.repo_id = repo_id
    branch = revision or "main"
    message = commit_message or "Publish SpeakER with speakrl"

    remove_stale_staging()
    with tempfile.TemporaryDirectory(prefix=f"{_STAGING_PREFIX}{os.getpid()}-") as tmp:
        # Build first: a run that cannot be published fails before anything reaches the Hub.
        local = build_dataset_dir(run_dir, Path(tmp) / "dataset", options)
        local_files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
        api = HfApi(endpoint=endpoint, token=token)
        try:
            api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
            if branch != "main":
                api.create_branch(repo_id, repo_type="dataset", branch=branch, exist_ok=True)
            before = api.repo_info(repo_id, repo_type="dataset", revision=branch).sha
            remote = api.list_repo_files(repo_id, repo_type="dataset", revision=branch)
            stale = sorted(set(remote) - set(local_files) - _KEEP_REMOTE)
            operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(local / p)) for p in local_files]
            operations += [CommitOperationDelete(path_in_repo=p) for p in stale]
            info = api.create_commit(
                repo_id,
                operations,
                commit_message=message,
                repo_type="dataset",
                revision=branch,
                create_pr=create_pr,
                parent_commit=before,  # refuse (409) rather than overwrite a commit made meanwhile
            )
        except PublishError:
            raise
        except Exception as e:  # noqa: BLE001 - every client failure becomes one sentence
            raise _hub_error(e, repo_id, endpoint) from None
    changed = info.oid != before or info.pr_url is not None
    url = f"{endpoint}/datasets/{repo_id}" + (f"/tree/{branch}" if branch != "main" else "")
    logger.info("pushed %s to %s (%s)", run_dir, url, "new commit" if changed else "unchanged")
    return PushResult(repo_id=repo_id, url=url, commit=info.oid, changed=changed, pr_url=info.pr_url)
