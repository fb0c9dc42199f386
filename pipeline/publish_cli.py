"""`speakrl publish`: a run directory → the Hub repo layout on disk (`--to-dir`) and/or a Hub dataset (`--repo-id`)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from speakrl.pipeline.errors import PublishError

app = typer.Typer()
console = Console(stderr=True)


@app.command("publish")
def publish(
    run_dir: Path = typer.Argument(..., help="Run directory written by `speakrl run`."),
    repo_id: Optional[str] = typer.Option(None, "--repo-id", help="Hub dataset repo OWNER/NAME to push to."),
    to_dir: Optional[Path] = typer.Option(None, "--to-dir", help="Write the exact Hub repo layout to this directory."),
    private: bool = typer.Option(False, "--private", help="Create the repo private (an existing repo keeps its visibility)."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Branch to push to (created if missing).", show_default="main"),
    commit_message: Optional[str] = typer.Option(None, "--commit-message", help="Commit title.", show_default="Publish SpeakER with speakrl"),
    create_pr: bool = typer.Option(False, "--create-pr", help="Open a pull request instead of committing to the branch."),
    ood_domain: Optional[List[str]] = typer.Option(None, "--ood-domain", help="Domain held out for test_ood (repeatable).",
                                                   show_default="one picked by the seed"),
    ood_tool: Optional[List[str]] = typer.Option(None, "--ood-tool", help="Also hold out every dialogue calling this tool (repeatable)."),
    no_ood: bool = typer.Option(False, "--no-ood", help="No out-of-domain split."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Split seed.", show_default="the run's seed"),
    license: Optional[str] = typer.Option(None, "--license", help="License id for the card.",
                                          show_default="cc-by-sa-4.0 if SGD values were used, else cc-by-4.0"),
    sgd: Optional[Path] = typer.Option(None, "--sgd", help="A `speakrl import sgd` run to add as the sgd and "
                                       "sgd_decision_points configs (SGD's splits, CC BY-SA 4.0)."),
) -> None:
    """Split, write parquet and the dataset card; push them to the Hugging Face Hub and/or a local directory."""
    from speakrl.pipeline.stages.publish import PublishOptions, build_dataset_dir, require_run

    if not repo_id and not to_dir:
        raise PublishError("nothing to do: pass --repo-id OWNER/NAME to push to the Hub, or --to-dir DIR to write locally")
    if to_dir is not None and to_dir.exists() and not to_dir.is_dir():
        raise PublishError(f"--to-dir {str(to_dir)!r} is a file; pass a directory (it is created if missing)")
    if no_ood and ood_domain:
        raise PublishError("--no-ood and --ood-domain contradict each other; pass one of them")

    def options() -> PublishOptions:  # fresh each time: push() fills in repo_id
        return PublishOptions(
            seed=seed,
            ood_domains=[] if no_ood else (list(ood_domain) if ood_domain else None),
            ood_tools=list(ood_tool or []),
            license=license,
            repo_id=repo_id,
            sgd_run=sgd,
        )

    require_run(run_dir)
    if repo_id:  # before any work, so a typo or a missing login fails at once, not after a local build
        from speakrl.pipeline.hub import check_repo_id, hub_token

        check_repo_id(repo_id)
        hub_token()
    if to_dir:
        if not to_dir.exists() or {p.name for p in to_dir.iterdir()} <= {"README.md", "data", "assets"}:
            # New, or only what a build writes: swap a whole new build in, so a killed build changes nothing.
            from speakrl.pipeline.io import build_dir_atomically

            out = build_dir_atomically(to_dir, lambda staging: build_dataset_dir(run_dir, staging, options()))
        else:  # someone else's files are there too: rebuild in place, touching only our files
            out = build_dataset_dir(run_dir, to_dir, options())
        console.print(f"wrote the dataset to {out}; load it with datasets.load_dataset({str(out)!r}, name)")
    if repo_id:
        from speakrl.pipeline.hub import push

        result = push(run_dir, repo_id, private=private, revision=revision, commit_message=commit_message,
                      create_pr=create_pr, options=options())
        if result.pr_url:
            console.print(f"opened pull request {result.pr_url}")
        elif result.changed:
            console.print(f"pushed {result.repo_id} at commit {result.commit[:12]}: {result.url}")
        else:
            console.print(f"{result.repo_id} already holds this dataset (commit {result.commit[:12]}); nothing to push")
