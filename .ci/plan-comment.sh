#!/usr/bin/env bash
# The pull-request steps of .ci/github/specd-plan.yml as a plain script, for any CI:
#   1. specd validate   2. specd plan --base "$BASE_REF" --format markdown   3. post or update ONE comment
# The comment starts with the marker <!-- specd-plan -->: an existing comment with it is edited in place.
#
# Environment:
#   SPECD          the specd command (default: specd; e.g. ".venv/bin/python -m daemon.cli")
#   SPECD_ENV      environment overlay to plan (default: dev)
#   BASE_REF       the revision the pull request merges into (default: origin/main)
#   PLAN_FILE      where the markdown goes (default: specd-plan.md)
#   GITHUB_TOKEN, GITHUB_REPOSITORY (owner/name), PR_NUMBER, GITHUB_API_URL (default https://api.github.com):
#                  with token, repository and PR number set, the comment is posted; without, only PLAN_FILE is
#                  written (other forges: post it with their own client).
# Exit status: 0 valid (with or without changes), 1 invalid specs or a failed plan (the comment says why).
set -euo pipefail

SPECD=${SPECD:-specd}
SPECD_ENV=${SPECD_ENV:-dev}
BASE_REF=${BASE_REF:-origin/main}
PLAN_FILE=${PLAN_FILE:-specd-plan.md}
MARKER='<!-- specd-plan -->'
status=0
errors=$(mktemp)
trap 'rm -f "$errors"' EXIT

# shellcheck disable=SC2086  # SPECD may be a command with arguments
if ! $SPECD validate --env "$SPECD_ENV" 2>"$errors"; then
  status=1
  { echo "$MARKER"; echo "### specd validate failed · env \`$SPECD_ENV\`"; echo; echo '```'; cat "$errors"; echo '```'; } >"$PLAN_FILE"
else
  rc=0
  # shellcheck disable=SC2086
  $SPECD plan --env "$SPECD_ENV" --base "$BASE_REF" --format markdown --detailed-exitcode >"$PLAN_FILE" 2>"$errors" || rc=$?
  if [ "$rc" -eq 1 ]; then
    status=1
    { echo "$MARKER"; echo "### specd plan failed · env \`$SPECD_ENV\`"; echo; echo '```'; cat "$errors"; echo '```'; } >"$PLAN_FILE"
  fi
fi
cat "$PLAN_FILE"

if [ -n "${GITHUB_TOKEN:-}" ] && [ -n "${GITHUB_REPOSITORY:-}" ] && [ -n "${PR_NUMBER:-}" ]; then
  PLAN_FILE="$PLAN_FILE" MARKER="$MARKER" python3 - <<'PY'
import json, os, urllib.request

api = os.environ.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
repo, number = os.environ["GITHUB_REPOSITORY"], os.environ["PR_NUMBER"]
headers = {"Authorization": f"Bearer {os.environ['GITHUB_TOKEN']}", "Accept": "application/vnd.github+json",
           "X-GitHub-Api-Version": "2022-11-28", "Content-Type": "application/json"}
body = open(os.environ["PLAN_FILE"], encoding="utf-8").read()

def call(method, url, data=None):
    request = urllib.request.Request(url, method=method, headers=headers, data=None if data is None else json.dumps(data).encode())
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")

existing, page = None, 1
while existing is None:
    comments = call("GET", f"{api}/repos/{repo}/issues/{number}/comments?per_page=100&page={page}")
    if not comments:
        break
    existing = next((c for c in comments if c.get("body", "").startswith(os.environ["MARKER"])), None)
    page += 1
if existing is None:
    created = call("POST", f"{api}/repos/{repo}/issues/{number}/comments", {"body": body})
    print(f"specd: posted plan comment {created['id']}")
else:
    call("PATCH", f"{api}/repos/{repo}/issues/comments/{existing['id']}", {"body": body})
    print(f"specd: updated plan comment {existing['id']}")
PY
fi
exit "$status"
