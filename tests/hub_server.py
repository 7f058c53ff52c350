"""A loopback stand-in for the Hub endpoints that ``huggingface_hub`` calls when uploading a model.

It answers repository creation, pre-upload (every file "regular", so contents travel base64 inside the
commit), and commit; it keeps what arrived. Requests it does not know get a 404 and are recorded, so a test
can show exactly which endpoint was missing. Bound to 127.0.0.1 only; stops with the test.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HubStandIn:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.commits: list[dict] = []
        self.unknown: list[str] = []
        self.validated_cards: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HubStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _send(self, status: int, payload: object | None = None, headers: dict | None = None) -> None:
                body = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def do_POST(self) -> None:
                body = self._body()
                path = self.path.split("?")[0]
                if path == "/api/repos/create":
                    request = json.loads(body or b"{}")
                    repo_id = f"{request.get('organization') or 'user'}/{request['name']}"
                    hub.repos.setdefault(repo_id, {})
                    return self._send(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id, "id": repo_id})
                if path == "/api/validate-yaml":
                    return self._validate_yaml(json.loads(body)["content"])
                parts = path.strip("/").split("/")
                # /api/models/{namespace}/{name}/preupload/{revision}
                if len(parts) >= 5 and parts[0] == "api" and parts[4] == "preupload":
                    files = json.loads(body)["files"]
                    return self._send(
                        200,
                        {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]},
                    )
                # /api/models/{namespace}/{name}/commit/{revision}
                if len(parts) >= 5 and parts[0] == "api" and parts[4] == "commit":
                    repo_id = f"{parts[2]}/{parts[3]}"
                    stored = hub.repos.setdefault(repo_id, {})
                    header = None
                    for line in body.decode().splitlines():
                        if not line.strip():
                            continue
                        item = json.loads(line)
                        if item["key"] == "header":
                            header = item["value"]
                        elif item["key"] == "file":
                            stored[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                        elif item["key"] == "deletedFile":
                            stored.pop(item["value"]["path"], None)
                    hub.commits.append({"repo_id": repo_id, "header": header})
                    oid = f"{len(hub.commits):040x}"
                    return self._send(
                        200,
                        {"commitUrl": f"{hub.url}/{repo_id}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None},
                    )
                hub.unknown.append(f"POST {self.path}")
                return self._send(404, {"error": "unknown endpoint"})

            def _validate_yaml(self, content: str) -> None:
                """Like the Hub: the model card's front matter must be a YAML mapping."""
                import yaml

                hub.validated_cards.append(content)
                errors = []
                if content.startswith("---"):
                    try:
                        metadata = yaml.safe_load(content.split("---", 2)[1])
                        if not isinstance(metadata, dict):
                            errors.append({"message": "metadata is not a mapping"})
                    except yaml.YAMLError as error:
                        errors.append({"message": f"invalid YAML: {error}"})
                return self._send(400 if errors else 200, {"errors": errors, "warnings": []})

            def do_GET(self) -> None:
                hub.unknown.append(f"GET {self.path}")
                self._send(404, {"error": "not found"}, {"X-Error-Code": "EntryNotFound"})

            def do_HEAD(self) -> None:
                hub.unknown.append(f"HEAD {self.path}")
                self._send(404, None, {"X-Error-Code": "EntryNotFound"})

        return Handler
