"""A local HTTP server on 127.0.0.1 for the fetcher's tests, with switchable misbehaviour,
and an offline mirror of the seven EMPIAR/EMDB entries of the manifest (small generated
files laid out as the archive lays them out, each with its entry's quirks)."""

from __future__ import annotations

import copy
import gzip
import hashlib
import html
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd

WRITE_CHUNK = 64 << 10


class Handler(BaseHTTPRequestHandler):
    """Serves ``server.root``; per-path misbehaviour from the server's dictionaries:
    ``statuses`` (answer these codes first, one per request), ``html`` (an HTML page with
    status 200), ``redirect`` (302 to a location), ``stall`` (sleep before answering),
    ``trickle`` (seconds between single bytes of the body), ``no_range`` (ignore Range),
    ``truncate`` (promise everything, send half, hang up; ``times`` left)."""

    protocol_version = "HTTP/1.0"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        srv = self.server
        rng = self.headers.get("Range")
        key = self.path.split("?")[0]
        srv.requests.append((self.path, rng))
        codes = srv.statuses.get(key)
        if codes:
            self.send_error(codes.pop(0))
            return
        if key in srv.stall:
            time.sleep(srv.stall[key])
        if key in srv.redirect:
            self.send_response(302)
            self.send_header("Location", srv.redirect[key])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if key in srv.html:
            body = b"<!DOCTYPE html><html><body><h1>Service unavailable</h1></body></html>"
            self._send(200, body, {"Content-Type": "text/html"})
            return
        path = srv.root / key.lstrip("/")
        if path.is_dir():
            links = "".join(f'<a href="{html.escape(p.name + ("/" if p.is_dir() else ""))}">'
                            f"{html.escape(p.name)}</a>\n" for p in sorted(path.iterdir()))
            self._send(200, f"<html><body>{links}</body></html>".encode(),
                       {"Content-Type": "text/html"})
            return
        if not path.is_file():
            self.send_error(404, "Not Found")
            return
        data = path.read_bytes()
        total = len(data)
        start, stop = 0, total
        headers = {}
        status = 200
        if rng and key not in srv.no_range:
            a, b = rng.split("=")[1].split("-")
            start = int(a)
            stop = min(total, int(b) + 1) if b else total
            if start >= total:
                self._send(416, b"", {"Content-Range": f"bytes */{total}"})
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{total}"
        body = data[start:stop]
        cut = srv.truncate.get(key)
        if cut is not None and cut["times"] > 0:
            cut["times"] -= 1
            self._send(status, body[: len(body) // 2], headers, length=len(body))
            return
        self._send(status, body, headers, trickle=srv.trickle.get(key))

    def _send(self, status, body, headers, length=None, trickle=None):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        srv = self.server
        try:
            for i in range(0, len(body), 1 if trickle else WRITE_CHUNK):
                block = body[i:i + (1 if trickle else WRITE_CHUNK)]
                if trickle:
                    time.sleep(trickle)
                self.wfile.write(block)
                with srv.lock:
                    srv.sent += len(block)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading: what it was not sent is not counted


def start_server(root: Path) -> ThreadingHTTPServer:
    root.mkdir(parents=True, exist_ok=True)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.root, httpd.requests, httpd.sent, httpd.lock = root, [], 0, threading.Lock()
    for name in ("statuses", "stall", "redirect", "trickle", "truncate"):
        setattr(httpd, name, {})
    httpd.html, httpd.no_range = set(), set()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    return httpd


def put(server, rel: str, data: bytes) -> str:
    p = server.root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return f"{server.url}/{rel}"


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()
