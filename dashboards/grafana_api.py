"""Publishing to a real Grafana through its HTTP API (grafana-client): folders, dashboards, versions.

Observe reads each dashboard back by uid together with its version history. specd writes every version
with the message `specd <git sha> fingerprint <fp>`, so:
  - the latest version's message names the fingerprint that is live;
  - a latest version with any other message was saved by someone else: drift (a hand edit in the UI);
  - older specd versions map fingerprints to version numbers: a `git revert` plans a restore of them.
Restores and drift repairs re-push the rebuilt JSON with a fresh specd message, never Grafana's own
restore endpoint (its "Restored from version N" message would look like a hand edit).

Unreachable, timing out, 429 or 5xx: retried with exponential backoff, then `GrafanaUnavailable`, which
the adapter turns into a transient ApplyError (and a Degraded observation) without blocking anything else.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from daemon.schema.dashboard import folder_uid
from daemon.shared.retry import call_with_retries
from dashboards.files import MARKER, LiveDashboard

T = TypeVar("T")
MESSAGE = re.compile(r"^specd (?P<revision>\S+) fingerprint (?P<fingerprint>[0-9a-f]{64})\b")
_TRANSIENT_STATUS = {0, 408, 429, 500, 502, 503, 504}


class GrafanaUnavailable(Exception):
    """Grafana could not be reached or kept failing; retrying later may help."""


class _Transient(Exception):
    """One failed attempt that may succeed when retried (unreachable, 429, 5xx)."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


class GrafanaRefused(Exception):
    """Grafana answered with a definite refusal (401, 403, 400, 412 ...); retrying will not help."""


def version_message(revision: str, fingerprint: str) -> str:
    return f"specd {revision[:12]} fingerprint {fingerprint}"


class GrafanaPublisher:
    def __init__(self, url: str, token: str, folder: str, *, timeout_s: float = 5.0, retries: int = 3, backoff_s: float = 0.5):
        from grafana_client import GrafanaApi  # imported here: the files-only default never needs it

        self.api = GrafanaApi.from_url(url, credential=token, timeout=timeout_s)
        self.url = url
        self.folder = folder
        self.folder_uid = folder_uid(folder)
        self.retries = retries
        self.backoff_s = backoff_s
        self._folder_ready = False

    def _call(self, what: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        from grafana_client.client import GrafanaException

        # Reads (observe, run by every plan) try at most twice: the next cycle observes again anyway.
        retries = min(self.retries, 1) if what.startswith(("read", "search")) else self.retries

        def once() -> T:
            try:
                return function(*args, **kwargs)
            except (GrafanaException, OSError) as exc:  # niquests' ConnectionError is an OSError
                status = getattr(exc, "status_code", 0) or 0
                if status not in _TRANSIENT_STATUS:
                    raise GrafanaRefused(f"Grafana refused {what}: HTTP {status} {_reason(exc)}") from None
                raise _Transient(status) from None

        try:
            return call_with_retries(once, attempts=retries + 1, backoff_s=self.backoff_s, retry_on=_Transient)
        except _Transient as exc:
            detail = f"HTTP {exc.status}" if exc.status else "unreachable"
            raise GrafanaUnavailable(f"Grafana at {self.url} {detail} during {what} after {retries + 1} tries") from None

    def ensure_folder(self) -> None:
        if self._folder_ready:
            return
        try:
            self._call("create folder", self.api.folder.create_folder, self.folder, uid=self.folder_uid)
        except GrafanaRefused as exc:
            if "HTTP 409" not in str(exc) and "HTTP 412" not in str(exc):  # 409: it exists already
                raise
        self._folder_ready = True

    def push(self, model: dict[str, Any], message: str) -> int:
        """Create or overwrite one dashboard in the environment's folder; returns Grafana's new version."""
        self.ensure_folder()
        body = {"dashboard": {**model, "id": None}, "folderUid": self.folder_uid, "message": message, "overwrite": True}
        result = self._call(f"save dashboard {model.get('uid')}", self.api.dashboard.update_dashboard, body)
        return int(result.get("version", 0))

    def delete(self, uid: str) -> None:
        try:
            self._call(f"delete dashboard {uid}", self.api.dashboard.delete_dashboard, uid)
        except GrafanaRefused as exc:
            if "HTTP 404" not in str(exc):
                raise

    def _get(self, uid: str) -> dict[str, Any] | None:
        try:
            return self._call(f"read dashboard {uid}", self.api.dashboard.get_dashboard, uid)
        except GrafanaRefused as exc:
            if "HTTP 404" in str(exc):
                return None
            raise

    def _versions(self, uid: str) -> list[dict[str, Any]]:
        answer = self._call(f"read versions of {uid}", self.api.dashboard_versions.get_dashboard_versions_by_uid, uid)
        versions = answer.get("versions", []) if isinstance(answer, dict) else answer  # Grafana ≥ 11.3 wraps the list
        return sorted(versions, key=lambda v: v.get("version", 0), reverse=True)

    def read(self, uid: str, key: str | None = None, verify_files: Callable[[dict[str, Any]], str] | None = None) -> LiveDashboard | None:
        """The dashboard with this uid as specd sees it (None when Grafana has none).

        `verify_files(marker)` checks the local files the marker lists (alert rules, scrape config).
        """
        found = self._get(uid)
        if found is None:
            return None
        model = found.get("dashboard", {})
        marker = model.get(MARKER) if isinstance(model.get(MARKER), dict) else {}
        version = int(model.get("version") or found.get("meta", {}).get("version") or 0)
        history = self._versions(uid)
        restorable: dict[str, str] = {}
        last_applied: re.Match[str] | None = None  # the newest version specd wrote
        for entry in history:
            match = MESSAGE.match(entry.get("message") or "")
            if match and match["fingerprint"] not in restorable:
                restorable[match["fingerprint"]] = f"version {entry.get('version')}"
                last_applied = last_applied or match
        latest = history[0] if history else {}
        match = MESSAGE.match(latest.get("message") or "")
        drift = ""
        if not match:
            who = latest.get("createdBy") or "someone"
            drift = f"version {latest.get('version', version)} saved by {who} outside specd"
        elif marker.get("fingerprint") != match["fingerprint"]:
            drift = f"version {version} does not carry the fingerprint its message names"
        elif verify_files is not None:
            drift = verify_files(marker)
        key = marker.get("key") or key  # a hand save in the UI drops the marker: the uid still says whose it is
        if key is None:
            return None
        return LiveDashboard(
            key,
            uid,
            last_applied["fingerprint"] if last_applied else marker.get("fingerprint"),
            last_applied["revision"] if last_applied else marker.get("revision"),
            marker.get("prune"),
            drift,
            version,
            restorable,
        )

    def managed_uids(self) -> list[str]:
        """Uids of every dashboard in the environment's folder that carries the `specd` tag."""
        params = {"tag": "specd", "type_": "dash-db", "folder_uids": [self.folder_uid], "limit": 5000}
        hits = self._call("search dashboards", self.api.search.search_dashboards, **params)
        return sorted(hit["uid"] for hit in hits if hit.get("uid"))


def _reason(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("message"):
        return str(response["message"])[:200]
    return ""
