"""`specd render` (Kubernetes manifests to a directory or a Git branch) and `specd owners` (CODEOWNERS).

Why a command beside the daemon's `manifests` kind: platform teams run Argo CD or Flux, which watch a
directory *in Git*. `specd render --branch deploy/prod` commits the manifests of a revision onto a branch
(plumbing only: a temporary index, `commit-tree`, `update-ref` — the user's checkout is never touched),
and renders nothing new when nothing changed, so the branch's history is the deploy history and a
`git revert` of a spec change renders, and commits, the earlier manifests again. `--out DIR` writes the
same files to a directory. Both validate every manifest offline first (kubernetes-validate for each of
the environment's `deploy.kubernetes_versions`) and refuse to write an invalid one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "render", help="render the Kubernetes manifests of services with deploy target kubernetes (to a directory or a Git branch)",
        description="Examples:\n  specd render --env prod --out deploy/\n  specd render --env prod --branch deploy/prod\n"
                    "  specd render --env prod --rev HEAD~1 --out /tmp/before",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(parser)
    parser.add_argument("--rev", default=None, help="a git revision to render instead of the working tree")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", default=None, metavar="DIR", help="write <namespace>/<service>/*.yaml under DIR (default: env deploy.manifests_dir)")
    where.add_argument("--branch", default=None, metavar="BRANCH", help="commit the manifests onto BRANCH of the repository (created if missing)")
    parser.set_defaults(handler=run_render)

    parser = subparsers.add_parser(
        "owners", help="spec owners: a table, or a CODEOWNERS file that maps spec folders and files to them",
        description="Examples:\n  specd owners\n  specd owners --codeowners > .github/CODEOWNERS\n"
                    "  specd owners --codeowners --check .github/CODEOWNERS",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(parser)
    parser.add_argument("--codeowners", action="store_true", help="print a CODEOWNERS file")
    parser.add_argument("--check", default=None, metavar="FILE", help="with --codeowners: exit 1 when FILE differs from the generated one")
    parser.set_defaults(handler=run_owners)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", default=".", help="git repository: a local path (default: current directory)")
    parser.add_argument("--env", default="dev", help="environment overlay in environments/ (default: dev)")
    parser.add_argument("--home", default=None, help="state root (default: $SPECD_HOME or ./.specd)")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE", help="Hydra override (repeatable)")


def rendered(desired: Any, home: Path | None = None) -> dict[str, str]:
    """{relative path: YAML} of every manifests resource of a desired state, validated (SpecErrors if not).
    With `home`, a service version whose image specd built there names that image (`daemon.shared.images`);
    without, every Deployment names the default reference (a function of the tree alone)."""
    from daemon.adapters.base import AdapterContext
    from daemon.adapters.manifests import ManifestsAdapter, files_for
    from daemon.core.manifests import directory_of
    from daemon.shared.errors import SpecErrors
    from daemon.shared.images import with_built_image

    resources = [r for r in desired.graph.resources if r.kind == "manifests"]
    with tempfile.TemporaryDirectory() as scratch:  # no home: an empty one, so no record is read
        ctx = AdapterContext(desired.composed.env, home or Path(scratch), Path(desired.checkout), desired.revision)
        issues = ManifestsAdapter(ctx).check(resources, desired.graph)
    if issues:
        raise SpecErrors(issues)
    out: dict[str, str] = {}
    for resource in resources:
        data = with_built_image(resource.data, home)
        for name, text in files_for(data, resource.fingerprint, desired.revision).items():
            out[f"{directory_of(resource.data)}/{name}"] = text
    return dict(sorted(out.items()))


def write_directory(root: Path, files: dict[str, str]) -> tuple[int, int]:
    """Write `files` under `root` atomically per file; remove specd-rendered folders and files no longer
    rendered (a folder is specd's when it holds a routing ConfigMap). Returns (written, removed)."""
    from daemon.shared.fsio import atomic_write_text

    written = removed = 0
    for rel, text in files.items():
        path = root / rel
        if not path.is_file() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, text, mode=0o644)
            written += 1
    folders = {str(Path(rel).parent) for rel in files}
    for config in root.glob("*/*/configmap-*-routing.yaml") if root.is_dir() else ():
        folder = config.parent
        rel_folder = str(folder.relative_to(root))
        if rel_folder not in folders:
            shutil.rmtree(folder)
            removed += 1
            continue
        for stale in folder.glob("*.yaml"):
            if f"{rel_folder}/{stale.name}" not in files:
                stale.unlink()
                removed += 1
    return written, removed


def _git(repo: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True, env=env, input=stdin).stdout.strip()


def commit_branch(repo: Path, branch: str, files: dict[str, str], message: str) -> str | None:
    """Commit exactly `files` as the tree of `branch` (plumbing, a private index). None: nothing changed."""
    ref = f"refs/heads/{branch}"
    _git(repo, "check-ref-format", ref)
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
        _git(repo, "read-tree", "--empty", env=env)
        for rel, text in files.items():
            blob = _git(repo, "hash-object", "-w", "--stdin", stdin=text)
            _git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{rel}", env=env)
        tree = _git(repo, "write-tree", env=env)
    try:
        parent = _git(repo, "rev-parse", "-q", "--verify", f"{ref}^{{commit}}")
    except subprocess.CalledProcessError:
        parent = None
    if parent and _git(repo, "rev-parse", f"{parent}^{{tree}}") == tree:
        return None
    commit = _git(repo, "commit-tree", tree, *(["-p", parent] if parent else []), "-m", message)
    _git(repo, "update-ref", ref, commit, parent or "0" * 40)  # refuses if the branch moved meanwhile
    return commit


def run_render(args: argparse.Namespace) -> int:
    from daemon.cli.main import _desired
    from daemon.shared.paths import specd_home

    desired = _desired(args, args.rev)
    home = specd_home(args.home)
    files = rendered(desired, home if home.is_dir() else None)
    services = sorted({rel.split("/")[1] for rel in files})
    if args.branch:
        message = f"specd render: {len(services)} service(s) at {desired.revision[:12]} (env {args.env})\n\nSpecd-Revision: {desired.revision}\n"
        commit = commit_branch(Path(args.repo), args.branch, files, message)
        if commit is None:
            print(f"{args.branch}: unchanged ({len(files)} manifests of {len(services)} service(s))")
        else:
            print(f"{args.branch}: committed {commit[:12]} ({len(files)} manifests of {len(services)} service(s))")
        return 0
    root = Path(args.out) if args.out else None
    if root is None:
        configured = Path(desired.composed.env.deploy.manifests_dir)
        root = configured if configured.is_absolute() else specd_home(args.home) / configured
    written, removed = write_directory(root, files)
    print(f"{root}: {len(files)} manifests of {len(services)} service(s) ({written} written, {removed} removed)")
    if not files:
        print("note: no service deploys to Kubernetes here (set deploy.target: kubernetes on a service or in the environment)", file=sys.stderr)
    return 0


def run_owners(args: argparse.Namespace) -> int:
    from daemon.cli.main import _desired
    from daemon.core.owners import check_owners, codeowners, owners_by_path
    from daemon.core.yamlpos import line_for, parse_with_lines
    from daemon.shared.errors import SpecErrors

    desired = _desired(args, None)
    docs = desired.composed.docs
    repo = Path(args.repo)

    def line_of(path: str, field: tuple) -> int:
        try:
            return line_for(parse_with_lines((repo / path).read_text())[1], field)
        except Exception:
            return 0

    issues = check_owners(docs, line_of)
    if issues:
        raise SpecErrors(issues)
    if args.codeowners:
        text = codeowners(docs)
        if args.check:
            current = Path(args.check).read_text() if Path(args.check).is_file() else ""
            if current != text:
                print(f"{args.check} is out of date: regenerate it with `specd owners --codeowners > {args.check}`", file=sys.stderr)
                return 1
            print(f"{args.check} is up to date")
            return 0
        print(text, end="")
        return 0
    owners = owners_by_path(docs)
    paths = sorted({d.path for d in docs if not d.path.startswith("<")})
    width = max((len(p) for p in paths), default=4)
    print(f"{'SPEC'.ljust(width)}  OWNERS")
    for path in paths:
        print(f"{path.ljust(width)}  {', '.join(owners.get(path, ())) or '-'}")
    return 0
