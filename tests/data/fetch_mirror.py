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
                with srv.lock:  # counted before the write: the client may finish reading first
                    srv.sent += len(block)
                self.wfile.write(block)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading: at most this block was counted but not sent


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


# ---------------------------------------------------------------------------------------------
# the offline rehearsal mirror of the seven entries


def _loop(block: str, columns: dict) -> list[str]:
    lines = [f"data_{block}", "", "loop_"]
    lines += [f"_{label} #{i + 1}" for i, label in enumerate(columns)]
    for row in zip(*columns.values()):
        lines.append(" ".join(f"{v:.6f}" if isinstance(v, float) else str(v) for v in row))
    return lines + [""]


# Per entry: STAR folder and name under data/ (the folder is unknown to the manifest where
# it lists only a name), its RELION style, where the image paths point (relative to the
# STAR's folder, or "data" for data/), the stacks as the STAR names them, the served name
# of each stack when it differs, and whether it lacks poses (10076: CTF only).
LAYOUT = {
    "trpv1": {
        "star": "particles/tv1_relion_data.star", "style": "1", "base": "star",
        "stacks": ["stack_0001.mrcs", "stack_0002.mrcs"]},
    "ribosome80s": {
        "star": "Particles/shiny_2sets.star", "style": "3.0", "base": "data", "stray": True,
        "stacks": ["Particles/MRC_0601/001_particles_shiny_nb50_new.mrcs",
                   "Particles/MRC_1901/002_particles_shiny_nb50_new.mrcs"]},
    "proteasome": {
        "star": "T1/T1.star", "style": "3.1", "base": "star",
        "stacks": ["Particles/p_001.mrcs", "Particles/p_002.mrcs"]},
    "mlafedb": {
        "star": "Empiar_10536_00_to_23.star", "style": "3.1-noctf", "base": "star",
        "stacks": ["Extract/job010/mics/m_001.mrcs", "Extract/job010/mics/m_002.mrcs"]},
    "iswi_ncp": {
        "star": "ADPBeF/ADPBeF.star", "style": "3.1", "base": "star",
        "stacks": ["Extract/job204/mics/a_001.mrcs", "Extract/job204/mics/a_002.mrcs"]},
    "tmem16f": {
        "star": "TMEM16F/All.star", "style": "3.1", "base": "star",
        "stacks": ["Extract/job003/Micrographs/t_001.mrcs",
                   "Extract/job003/Micrographs/t_002.mrcs"]},
    "ribosome50s": {
        "star": "Parameters.star", "style": "1-detector", "base": "star", "no_poses": True,
        "stacks": ["L17Combine_weight_local.mrcs"],
        "served": {"L17Combine_weight_local.mrcs": "L17Combine_weight_local.mrc"}},
}


def _star_text(style: str, names, table, pixel: float, stray: bool, poses: bool) -> str:
    n = len(names)
    per = {"rlnImageName": list(names),
           "rlnDefocusU": [float(v) for v in table["defocus_u"]],
           "rlnDefocusV": [float(v) for v in table["defocus_v"]],
           "rlnDefocusAngle": [float(v) for v in table["defocus_angle"]]}
    if poses:  # refined poses (ZYZ, degrees) and origins, as a refinement writes them
        for label, col in (("rlnAngleRot", "rot"), ("rlnAngleTilt", "tilt"),
                           ("rlnAnglePsi", "psi")):
            per[label] = [float(v) for v in table[col]]
        px = style.startswith(("1", "3.0"))  # RELION < 3.1: origins in pixels
        for ax in ("X", "Y"):
            shift = table[f"shift_{ax.lower()}"].to_numpy(float)
            per[f"rlnOrigin{ax}" if px else f"rlnOrigin{ax}Angst"] = \
                [float(v) for v in (shift / pixel if px else shift)]
    ctf = {"rlnVoltage": 300.0, "rlnSphericalAberration": 2.7, "rlnAmplitudeContrast": 0.1}
    if style in ("1", "3.0", "1-detector"):
        mag = 38168.0 if style == "1-detector" else 10000.0
        per.update({k: [v] * n for k, v in ctf.items()})
        per["rlnMagnification"] = [mag] * n
        per["rlnDetectorPixelSize"] = [pixel * mag / 1e4] * n  # µm
        if style == "3.0":
            per["rlnPhaseShift"] = [0.0] * n
        lines = _loop("", per)
        if stray:  # EMPIAR-10028: a stray character on one line, past the first particles
            bad = lines.index(next(r for r in lines if r.startswith(names[-2])))
            lines[bad] = lines[bad] + " 9"
        return "\n".join(["# RELION; version 1 style"] + lines)
    optics = {"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"],
              "rlnImagePixelSize": [pixel], "rlnImageSize": [0], "rlnImageDimensionality": [2]}
    if style == "3.1":
        optics.update({k: [v] for k, v in ctf.items()})
    per["rlnOpticsGroup"] = [1] * n
    return "\n".join(["", "# version 30001", ""] + _loop("optics", optics)
                     + ["# version 30001", ""] + _loop("particles", per))


def build_mirror(root: Path, manifest: dict, n: int = 24, box: int = 32, seed: int = 0):
    """Lay out the seven entries of ``manifest`` under ``root`` (EMPIAR ``…/data/`` trees and
    EMDB ``map/*.map.gz``) with ``n`` simulated particles of ``box`` px at each entry's pixel
    size.  Returns (rehearsal manifest, truth): the manifest is ``manifest`` with only what
    small generated files cannot honour changed (map and image boxes, the two known map
    hashes); truth[key] = {"images": float32 (n, box, box) as served, "map": bytes, ...}."""
    from radsvd.data.mrc import write_mrc
    from radsvd.data.molecules import synthetic_molecule
    from radsvd.data.simulate import Microscope, simulate_particles

    rehearsal = copy.deepcopy({k: v for k, v in manifest.items() if not k.startswith("_")})
    truth = {}
    for i, (key, ds) in enumerate(rehearsal["datasets"].items()):
        lay = LAYOUT[key]
        pixel = float(ds["pixel_size"])
        mol = synthetic_molecule(manifest["synthetic"][ds["synthetic_standin"]]["molecule"])
        images, table = simulate_particles(mol, n=n, N=box, pixel_size=pixel, snr=1.0,
                                           seed=seed + i, microscope=Microscope(
                                               particles_per_micrograph=n // 2 or 1))
        served_images = -images if ds.get("contrast_inverted") else images
        # the map, gzipped, where EMDB keeps it
        rel_map = ds["files"]["map"]["urls"][0].replace("{ebi}/", "")
        vol = mol.volume(box).astype(np.float32)
        tmp = root.parent / f".{key}.map.gz"
        write_mrc(tmp, vol, pixel)
        map_bytes = tmp.read_bytes()
        tmp.unlink()
        (root / rel_map).parent.mkdir(parents=True, exist_ok=True)
        (root / rel_map).write_bytes(map_bytes)
        f = ds["files"]["map"]
        f["header"] = {"box": box, "voxel_size": pixel}
        if f.get("sha256"):
            f["sha256"] = hashlib.sha256(map_bytes).hexdigest()
        ds["box"] = box
        # the stacks and the STAR file, in the entry's own layout
        data = root / f"empiar/world_availability/{ds['empiar']}/data"
        star_path = data / lay["star"]
        base = data if lay["base"] == "data" else star_path.parent
        chunks = np.array_split(np.arange(n), len(lay["stacks"]))
        names = []
        for stack, idx in zip(lay["stacks"], chunks):
            served = (lay.get("served") or {}).get(stack, stack)
            target = base / served
            target.parent.mkdir(parents=True, exist_ok=True)
            write_mrc(root.parent / ".stack.mrcs", served_images[idx], pixel, stack=True)
            (root.parent / ".stack.mrcs").replace(target)
            names += [f"{j + 1:06d}@{stack}" for j in range(len(idx))]
        star_path.parent.mkdir(parents=True, exist_ok=True)
        star_path.write_text(_star_text(lay["style"], names, table, pixel, lay.get("stray"),
                                        not lay.get("no_poses")))
        if key == "tmem16f":  # a second STAR of the entry, which the manifest also names
            (star_path.parent / "Final.star").write_text(star_path.read_text())
        truth[key] = {"images": served_images, "map": map_bytes, "star": star_path,
                      "table": table, "volume": vol}
    return rehearsal, truth


def write_manifest(path: Path, manifest: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data)
