"""Pushing to the Hub: the real `huggingface_hub` client pushes to a local Hub-compatible server (HF_ENDPOINT), and
the real `datasets.load_dataset(repo_id)` reads every config and split back through it."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
from huggingface_hub import DatasetCard

from speakrl.pipeline.errors import PublishError, RunDirError
from speakrl.pipeline.hub import check_repo_id, push
from speakrl.pipeline.stages.publish import PublishOptions, build_dataset_dir
from speakrl_testing.hub_server import HubServer, hub_environment
from speakrl_testing.runs import check_published, make_run, run_cli


@pytest.fixture(scope="module")
def hub():
    with HubServer() as server:
        yield server


@pytest.fixture
def env(hub, tmp_path):
    hub.allow()
    with hub_environment(hub, tmp_path):
        yield hub


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("hub") / "run")


_names = iter(range(10_000))


@pytest.fixture
def repo_id(hub) -> str:
    return f"{hub.user}/SpeakER-{next(_names)}"


def load_from_hub(repo_id: str, cache: Path, revision: str | None = None):
    return lambda name: datasets.load_dataset(repo_id, name, revision=revision, cache_dir=str(cache))


def test_push_then_load_every_config_and_split(env, run, repo_id, tmp_path):
    result = push(run, repo_id)
    assert result.changed and result.url.endswith(f"/datasets/{repo_id}")
    # The Hub holds exactly the local build, byte for byte.
    local = build_dataset_dir(run, tmp_path / "local", PublishOptions(repo_id=repo_id))
    remote = env.files(repo_id)
    assert sorted(remote) == sorted([".gitattributes", *(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())])
    assert all(remote[p] == (local / p).read_bytes() for p in remote if p != ".gitattributes")
    # Binary files went through LFS (the path the real Hub takes), the card as a regular file.
    assert any(path.endswith("/info/lfs/objects/batch") for _, path in env.requests)
    # load_dataset through the endpoint returns exactly the pushed rows, for every config and split.
    counts = check_published(load_from_hub(repo_id, tmp_path / "cache"), run)
    assert set(counts["default"]) == {"train", "validation", "test", "test_ood"}


def test_real_run_round_trip(env, small_run, repo_id, tmp_path):
    """A generated SpeakER run (offline backend) pushed and loaded back: every row, every config and split."""
    push(small_run, repo_id)
    counts = check_published(load_from_hub(repo_id, tmp_path / "cache"), small_run)
    assert all(counts["default"].get(s) for s in ("train", "validation", "test", "test_ood"))


def test_card_on_the_hub_parses_with_complete_metadata(env, run, repo_id):
    push(run, repo_id)
    card = DatasetCard.load(repo_id, repo_type="dataset")
    data = card.data.to_dict()
    for key in ("license", "language", "task_categories", "size_categories", "tags", "configs", "pretty_name"):
        assert data.get(key), key
    assert "synthetic" in data["tags"]
    assert f'load_dataset("{repo_id}")' in card.text
    assert env.url not in card.content


def test_token_never_reaches_an_uploaded_file(env, tmp_path, repo_id, monkeypatch):
    # Secrets in the environment while generating and pushing: none may end up in the repo.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-openai-key-123456")
    run = make_run(tmp_path / "run")
    push(run, repo_id)
    secrets = [env.token.encode(), b"sk-test-secret-openai-key-123456"]
    for path, content in env.files(repo_id).items():
        assert not any(s in content for s in secrets), path
    for body in env.bodies:  # everything the client sent, compressed or not: commit payloads, LFS uploads
        assert not any(s in body for s in secrets)
    for name in ("default", "decision_points", "rejected"):  # and decoded values, in case compression hid a match
        ds = datasets.load_dataset(repo_id, name, cache_dir=str(tmp_path / "cache"))
        assert not any(s.decode() in str(d.to_list()) for d in ds.values() for s in secrets)


def test_republishing_the_same_run_is_a_no_op(env, run, repo_id):
    first = push(run, repo_id)
    commits = env.commit_count(repo_id)
    again = push(run, repo_id)
    assert not again.changed and again.commit == first.commit
    assert env.commit_count(repo_id) == commits  # no empty commit


def test_a_changed_build_replaces_the_old_one(env, run, repo_id, tmp_path):
    push(run, repo_id)
    assert any("test_ood" in p for p in env.files(repo_id))
    second = push(run, repo_id, options=PublishOptions(ood_domains=[]))
    assert second.changed
    assert not any("test_ood" in p for p in env.files(repo_id))  # stale shards deleted in the same commit
    ds = datasets.load_dataset(repo_id, "default", cache_dir=str(tmp_path / "cache"))
    assert set(ds) == {"train", "validation", "test"}


def test_revision_and_pull_request_leave_main_alone(env, run, repo_id, tmp_path):
    push(run, repo_id)
    main_files = env.files(repo_id)
    branch = push(run, repo_id, revision="ood-tools", options=PublishOptions(ood_tools=["book_hotel"]))
    assert branch.changed and env.files(repo_id) == main_files
    ds = datasets.load_dataset(repo_id, "default", revision="ood-tools", cache_dir=str(tmp_path / "cache"))
    assert "hotels" in set(ds["test_ood"]["domain"])
    pr = push(run, repo_id, create_pr=True, options=PublishOptions(ood_domains=[]))
    assert pr.pr_url and pr.pr_url.endswith("/discussions/1")
    assert env.files(repo_id) == main_files
    assert not any("test_ood" in p for p in env.files(repo_id, revision="refs/pr/1"))


def test_private_repo_needs_the_token_to_read(env, run, repo_id, tmp_path):
    push(run, repo_id, private=True)
    assert env.repos[("dataset", repo_id)].private
    check_published(load_from_hub(repo_id, tmp_path / "c1"), run)  # with HF_TOKEN
    with hub_environment(env, tmp_path, token=None):  # a fresh cache and no token at all
        with pytest.raises(datasets.exceptions.DatasetNotFoundError):
            datasets.load_dataset(repo_id, "default", cache_dir=str(tmp_path / "c2"))


# --- refusals and bad input: one sentence, and nothing reported as pushed ---------------------------------------------


@pytest.mark.parametrize(
    "status, on, message",
    [
        (401, "all", r"rejected the token \(401\)"),
        (403, "write", "may not write"),
        (403, "lfs", "may not write"),
        (403, "lfs-upload", "may not write"),  # the object store refuses after the batch said yes
        (409, "commit", r"conflict \(409\)"),
        (500, "commit", "HTTP 500"),
    ],
)
def test_server_refusals_are_one_sentence_and_push_nothing(run, tmp_path, status, on, message):
    with HubServer() as env, hub_environment(env, tmp_path):  # its own server: no LFS object stored by other tests
        check_refusal(env, run, f"{env.user}/SpeakER", status, on, message)


def check_refusal(env: HubServer, run: Path, repo_id: str, status: int, on: str, message: str) -> None:
    push(run, repo_id, options=PublishOptions(ood_domains=[]))
    before = env.files(repo_id)
    commits = env.commit_count(repo_id)
    env.refuse(status, on=on)
    with pytest.raises(PublishError, match=message) as err:
        push(run, repo_id)  # a different build (with test_ood): would change the repo
    assert "\n" not in str(err.value) and env.token not in str(err.value)
    env.allow()
    assert env.files(repo_id) == before and env.commit_count(repo_id) == commits


def test_wrong_token_is_refused(env, run, repo_id):
    with pytest.raises(PublishError, match="401"):
        push(run, repo_id, token="hf_not_the_right_token")
    assert ("dataset", repo_id) not in env.repos


def test_missing_token(hub, run, repo_id, tmp_path):
    with hub_environment(hub, tmp_path, token=None):
        with pytest.raises(PublishError, match="no Hugging Face token"):
            push(run, repo_id)
    assert ("dataset", repo_id) not in hub.repos


def test_a_missing_run_directory_is_reported_before_a_missing_token(hub, repo_id, tmp_path):
    with hub_environment(hub, tmp_path, token=None):
        with pytest.raises(RunDirError, match="does not exist"):
            push(tmp_path / "no-such-run", repo_id)


def test_publish_without_a_token_fails_before_building_anything(hub, run, repo_id, tmp_path, monkeypatch, capsys):
    # --to-dir and --repo-id together: the local build would take minutes on a large run before the push found
    # there is no login.
    with hub_environment(hub, tmp_path, token=None):
        assert run_cli(monkeypatch, "publish", str(run), "--to-dir", str(tmp_path / "out"), "--repo-id", repo_id) == 2
    assert "no Hugging Face token" in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("bad", ["SpeakER", "a/b/c", "me/", "me/bad name", "me/x..y", "-me/x", ""])
def test_malformed_repo_id(bad):
    with pytest.raises(PublishError, match="not a valid repo id"):
        check_repo_id(bad)


def test_run_without_accepted_rows_pushes_nothing(env, tmp_path, repo_id):
    run = make_run(tmp_path / "run")
    (run / "accepted.jsonl").write_text("")
    with pytest.raises(PublishError, match="no accepted dialogues"):
        push(run, repo_id)
    assert ("dataset", repo_id) not in env.repos  # failed before creating anything


def test_cli_push_and_refusal(env, run, repo_id, monkeypatch, capsys):
    def speakrl(*args: str) -> int:
        return run_cli(monkeypatch, *args)

    assert speakrl("publish", str(run), "--repo-id", repo_id, "--commit-message", "First SpeakER") == 0
    assert "pushed" in capsys.readouterr().err
    repo = env.repos[("dataset", repo_id)]
    assert repo.commits[repo.refs["main"]].title == "First SpeakER"
    assert speakrl("publish", str(run), "--repo-id", repo_id) == 0
    assert "nothing to push" in " ".join(capsys.readouterr().err.split())
    env.refuse(403)
    assert speakrl("publish", str(run), "--repo-id", repo_id, "--no-ood") == 2
    err = capsys.readouterr().err
    assert "403" in err and "Traceback" not in err and err.count("error:") == 1


def test_unreachable_endpoint_is_one_sentence(run, tmp_path):
    server = HubServer().start()
    server.stop()  # nothing listens on its port any more
    with hub_environment(server, tmp_path):
        with pytest.raises(PublishError, match="cannot reach the Hub"):
            push(run, "tester/gone")
