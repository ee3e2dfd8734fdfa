"""A small stand-in for the Hugging Face Hub on 127.0.0.1: the endpoints huggingface_hub calls
(model info, file metadata by HEAD, file download by GET with Range), serving repos from memory."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class FakeHub:
    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    served: dict[str, bytes] = field(default_factory=dict)  # "repo/file" -> bytes sent instead (corruption)
    drop_after: dict[str, int] = field(default_factory=dict)  # "repo/file" -> bytes sent before the line drops once
    slow: float = 0.0  # seconds of pause per 64 KiB sent
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Range header

    def start(self) -> str:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub.handle(self, head=True)

            def do_GET(self):
                hub.handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def etag(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def _send(self, h, status: int, headers: dict, body: bytes = b"", head: bool = False) -> None:
        h.send_response(status)
        for key, value in headers.items():
            h.send_header(key, str(value))
        h.end_headers()
        if not head and body:
            h.wfile.write(body)

    def _json(self, h, status: int, obj, head=False, error_code: str | None = None) -> None:
        body = json.dumps(obj).encode()
        headers = {"Content-Type": "application/json", "Content-Length": len(body)}
        if error_code:
            headers["X-Error-Code"] = error_code
        self._send(h, status, headers, body, head)

    def handle(self, h, head: bool) -> None:
        path = unquote(urlparse(h.path).path)
        self.requests.append(("HEAD" if head else "GET", path, h.headers.get("Range")))
        if path.startswith("/api/models/"):
            repo_id = path[len("/api/models/"):].split("/revision/")[0]
            files = self.repos.get(repo_id)
            if files is None:
                return self._json(h, 404, {"error": "Repository not found"}, head, "RepoNotFound")
            siblings = [{"rfilename": name, "size": len(data), "blobId": self.etag(data)[:40],
                         "lfs": {"sha256": self.etag(data), "size": len(data), "pointerSize": 134}}
                        for name, data in files.items()]
            return self._json(h, 200, {"id": repo_id, "modelId": repo_id, "sha": COMMIT, "siblings": siblings,
                                       "private": False, "tags": []}, head)
        if "/resolve/" not in path:
            return self._json(h, 404, {"error": "not found"}, head)
        repo_id, rest = path.lstrip("/").split("/resolve/", 1)
        filename = rest.split("/", 1)[1]
        files = self.repos.get(repo_id)
        if files is None:
            return self._json(h, 404, {"error": "Repository not found"}, head, "RepoNotFound")
        if filename not in files:
            return self._send(h, 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT,
                                       "Content-Length": 0}, b"", head)
        key = f"{repo_id}/{filename}"
        data = files[filename]
        body = self.served.get(key, data)
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{self.etag(data)}"', "X-Linked-Etag": f'"{self.etag(data)}"',
                   "X-Linked-Size": len(data), "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        start = 0
        range_header = h.headers.get("Range")
        if range_header and range_header.startswith("bytes="):
            start = int(range_header[6:].split("-")[0] or 0)
        chunk = body[start:]
        status = 206 if start else 200
        headers["Content-Length"] = len(chunk)
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
        if head:
            return self._send(h, 200, {**headers, "Content-Length": len(data)}, b"", True)
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, str(v))
        h.end_headers()
        limit = self.drop_after.pop(key, None)
        sent = 0
        import time

        for i in range(0, len(chunk), 65536):
            piece = chunk[i : i + 65536]
            if limit is not None and sent + len(piece) > limit:
                h.wfile.write(piece[: max(0, limit - sent)])
                h.wfile.flush()
                h.close_connection = True
                h.connection.shutdown(2)
                return
            h.wfile.write(piece)
            sent += len(piece)
            if self.slow:
                time.sleep(self.slow)


def repo_from_folder(folder) -> dict[str, bytes]:
    from pathlib import Path

    return {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}
