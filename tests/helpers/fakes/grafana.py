"""A faithful fake of the parts of Grafana's HTTP API that specd uses, for tests and the benchmark.

No Grafana server can be installed here (not in Debian, PyPI or npm), so the push path is tested against
this: an HTTP server on 127.0.0.1 speaking Grafana 11's JSON, status codes and versioning rules:
  - every /api call except /api/health needs `Authorization: Bearer <token>` (401 otherwise);
  - POST /api/folders: 409 when the uid or title exists;
  - POST /api/dashboards/db: version+1 per save with its message kept in the history; without
    `overwrite`, a stale or missing `version` for an existing uid is 412 (version-mismatch), as is a
    second dashboard with the same title in the folder (name-exists); unknown folderUid is 400;
  - GET /api/dashboards/uid/:uid, DELETE it, GET …/versions ({"continueToken","versions"}, newest first);
  - GET /api/search with tag, type, folderUIDs, query, dashboardUIDs.
Test hooks: `edit_by_hand(uid, change, user)` saves a version as a UI user would; `outage(status)`
makes every call answer `status` (e.g. 503) until cleared.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeGrafana:
    def __init__(self, token: str = "test-token", host: str = "127.0.0.1", port: int = 0):
        self.token = token
        self.lock = threading.Lock()
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}  # uid -> {"model", "folderUid", "versions": [...]}
        self.requests: list[tuple[str, str]] = []
        self.outage_status: int | None = None
        self._next_id = 1
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="fake-grafana", daemon=True)

    def __enter__(self) -> FakeGrafana:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> FakeGrafana:
        self.thread.start()
        return self

    def close(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()

    # ------------------------------------------------------------------ test hooks
    def outage(self, status: int | None) -> None:
        self.outage_status = status

    def edit_by_hand(self, uid: str, change: Callable[[dict[str, Any]], None], user: str = "alice", message: str = "") -> int:
        """Save a new version as a person in the UI would (Grafana drops unknown keys such as __specd)."""
        with self.lock:
            entry = self.dashboards[uid]
            model = copy.deepcopy(entry["model"])
            model.pop("__specd", None)
            change(model)
            return self._store(uid, model, entry["folderUid"], message, user)

    def model(self, uid: str) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self.dashboards[uid]["model"])

    # ------------------------------------------------------------------ API
    def _store(self, uid: str, model: dict[str, Any], folder: str, message: str, user: str) -> int:
        entry = self.dashboards.setdefault(uid, {"id": self._take_id(), "versions": [], "created": _now()})
        version = len(entry["versions"]) + 1
        model = {**model, "uid": uid, "id": entry["id"], "version": version}
        entry.update(model=model, folderUid=folder, updated=_now(), updatedBy=user)
        entry["versions"].append(
            {"id": self._take_id(), "dashboardId": entry["id"], "uid": uid, "parentVersion": version - 1, "restoredFrom": 0,
             "version": version, "created": _now(), "createdBy": user, "message": message, "data": copy.deepcopy(model)}
        )
        return version

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def save_dashboard(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        model = body.get("dashboard")
        if not isinstance(model, dict) or not model.get("title"):
            return 400, {"message": "Dashboard title cannot be empty"}
        folder = body.get("folderUid") or ""
        if folder and folder not in self.folders:
            return 400, {"message": "folder not found"}
        uid = model.get("uid") or f"auto{self._next_id}"
        existing = self.dashboards.get(uid)
        overwrite = bool(body.get("overwrite"))
        if existing and not overwrite and model.get("version") != existing["model"]["version"]:
            return 412, {"status": "version-mismatch", "message": "The dashboard has been changed by someone else"}
        for other_uid, other in self.dashboards.items():
            if other_uid != uid and other["folderUid"] == folder and other["model"]["title"] == model["title"] and not overwrite:
                return 412, {"status": "name-exists", "message": "A dashboard with the same name in the folder already exists"}
        version = self._store(uid, model, folder, str(body.get("message") or ""), "api-token")
        entry = self.dashboards[uid]
        slug = model["title"].lower().replace(" ", "-")
        return 200, {"id": entry["id"], "uid": uid, "url": f"/d/{uid}/{slug}", "status": "success", "version": version, "slug": slug}

    def create_folder(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        title, uid = body.get("title"), body.get("uid") or f"f{self._next_id}"
        if not title:
            return 400, {"message": "folder title cannot be empty"}
        if uid in self.folders or any(f["title"] == title for f in self.folders.values()):
            return 409, {"message": "a folder with the same name or uid already exists"}
        self.folders[uid] = {"id": self._take_id(), "uid": uid, "title": title, "url": f"/dashboards/f/{uid}", "version": 1}
        return 200, self.folders[uid]

    def search(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        tags = set(query.get("tag", []))
        folders = set(query.get("folderUIDs", []))
        uids = set(query.get("dashboardUIDs", []))
        text = (query.get("query") or [""])[0].lower()
        hits = []
        for uid, entry in sorted(self.dashboards.items()):
            model = entry["model"]
            if tags - set(model.get("tags", [])) or (folders and entry["folderUid"] not in folders) or (uids and uid not in uids):
                continue
            if text and text not in model["title"].lower() or query.get("type", ["dash-db"])[0] != "dash-db":
                continue
            folder = self.folders.get(entry["folderUid"], {})
            hits.append({"id": entry["id"], "uid": uid, "title": model["title"], "uri": f"db/{uid}", "url": f"/d/{uid}",
                         "type": "dash-db", "tags": model.get("tags", []), "isStarred": False,
                         "folderUid": entry["folderUid"], "folderTitle": folder.get("title", "General")})
        return hits[: int((query.get("limit") or ["1000"])[0])]

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "folders"] and method == "POST" and len(parts) == 2:
            return self.create_folder(body or {})
        if parts[:2] == ["api", "folders"] and method == "GET":
            if len(parts) == 2:
                return 200, list(self.folders.values())
            folder = self.folders.get(parts[2])
            return (200, folder) if folder else (404, {"message": "folder not found"})
        if parts == ["api", "dashboards", "db"] and method == "POST":
            return self.save_dashboard(body or {})
        if parts == ["api", "search"] and method == "GET":
            return 200, self.search(query)
        if parts[:3] == ["api", "dashboards", "uid"] and len(parts) >= 4:
            entry = self.dashboards.get(parts[3])
            if entry is None:
                return 404, {"message": "Dashboard not found"}
            if len(parts) == 4 and method == "GET":
                folder = self.folders.get(entry["folderUid"], {})
                meta = {"type": "db", "slug": entry["model"]["title"].lower(), "url": f"/d/{parts[3]}", "version": entry["model"]["version"],
                        "created": entry["created"], "updated": entry["updated"], "updatedBy": entry["updatedBy"],
                        "folderUid": entry["folderUid"], "folderTitle": folder.get("title", "General")}
                return 200, {"dashboard": copy.deepcopy(entry["model"]), "meta": meta}
            if len(parts) == 4 and method == "DELETE":
                del self.dashboards[parts[3]]
                return 200, {"title": entry["model"]["title"], "message": f"Dashboard {entry['model']['title']} deleted", "id": entry["id"]}
            if parts[4:] == ["versions"] and method == "GET":
                versions = [{k: v for k, v in item.items() if k != "data"} for item in reversed(entry["versions"])]
                return 200, {"continueToken": "", "versions": versions[: int((query.get("limit") or ["1000"])[0])]}
            if len(parts) == 6 and parts[4] == "versions" and method == "GET":
                for item in entry["versions"]:
                    if str(item["version"]) == parts[5]:
                        return 200, copy.deepcopy(item)
                return 404, {"message": "Dashboard version not found"}
        return 404, {"message": "Not found"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                fake.requests.append((method, url.path))
                if fake.outage_status is not None:
                    return self._send(fake.outage_status, {"message": "service unavailable"})
                if url.path == "/api/health":
                    return self._send(200, {"database": "ok", "version": "11.6.0"})
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    return self._send(401, {"message": "Unauthorized"})
                try:  # Grafana ignores a body on GET/DELETE
                    body = json.loads(raw) if raw and method == "POST" else None
                except ValueError:
                    return self._send(400, {"message": "bad request data"})
                with fake.lock:
                    status, answer = fake.route(method, url.path, parse_qs(url.query), body)
                self._send(status, answer)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

            def _send(self, status: int, answer: Any) -> None:
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler
