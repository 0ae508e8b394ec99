"""Manifest-driven downloads of the paper's datasets (``data_manifest.yaml``).

Guarantees:
- integrity: size and sha256 are checked when the manifest knows them (and header fields of
  maps: box and voxel size); a mismatch stops with :class:`FetchError` saying what differed
  and what to do.  Nothing is renamed into place before it is verified;
- atomic writes: downloads go to ``<name>.part`` and are renamed when complete and verified;
- retries and clean resumption: an interrupted download keeps its ``.part`` file and the next
  attempt continues it with an HTTP Range request (or restarts if the server ignores Range);
- only what is needed: of a particle stack, only the header and the first images are fetched
  (one Range request; MRC: 1024-byte header + extended header + k·nx·ny·bytes), and the
  local stack is a valid MRC file holding those k images;
- mirrors: URLs in the manifest are written ``{ebi}/…``; the ``ebi`` base is overridden by
  ``RADSVD_BASE_URL`` (or ``base_url=`` / ``radsvd fetch --base-url``), the EMPIAR API base by
  ``RADSVD_EMPIAR_API``, the manifest itself by ``RADSVD_MANIFEST``.
Only ``urllib`` from the standard library is used.
"""

from __future__ import annotations

import hashlib
import html.parser
import json
import os
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from radsvd._validate import InputError
from radsvd.data.io import atomic_path

USER_AGENT = "radsvd-fetch/0.1 (+https://github.com/; cryo-EM alignment benchmarks)"
CHUNK = 1 << 20


class FetchError(RuntimeError):
    """A download failed or did not match the manifest; the message says what to do."""


class NotFoundError(FetchError):
    """The server has no file at this address (HTTP 404/410)."""


# ---------------------------------------------------------------------------------------------
# manifest


def manifest_path() -> Path:
    env = os.environ.get("RADSVD_MANIFEST")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent / "data_manifest.yaml"
        if cand.exists():
            return cand
    raise FileNotFoundError("data_manifest.yaml not found (set RADSVD_MANIFEST to its path)")


def load_manifest(path=None) -> dict:
    """The manifest as a dict, validated for the fields the fetcher needs."""
    import yaml

    path = Path(path) if path is not None else manifest_path()
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict) or "datasets" not in data:
        raise InputError(f"{path}: a manifest needs a top-level 'datasets' mapping")
    for name, ds in data["datasets"].items():
        for key in ("title", "files"):
            if key not in ds:
                raise InputError(f"{path}: dataset {name!r} lacks {key!r}")
        for fname, f in ds["files"].items():
            if not f.get("urls"):
                raise InputError(f"{path}: dataset {name!r} file {fname!r} has no 'urls'")
    data["_path"] = str(path)
    return data


def resolve_dataset(manifest: dict, name: str) -> tuple[str, dict]:
    """Find a dataset by key or alias (case-insensitive: 'trpv1', 'EMPIAR-10005', 'EMD-5778')."""
    want = name.lower()
    for key, ds in manifest["datasets"].items():
        if want == key.lower() or want in (a.lower() for a in ds.get("aliases", [])):
            return key, ds
    known = ", ".join(manifest["datasets"])
    synth = manifest.get("synthetic", {})
    if name in synth:
        raise InputError(f"{name!r} is a synthetic preset: nothing to download; use "
                         f"`radsvd simulate --molecule {synth[name].get('molecule', name)}`")
    raise InputError(f"unknown dataset {name!r}; the manifest lists: {known}")


def mirrors(manifest: dict, base_url: str | None = None) -> dict:
    m = dict(manifest.get("mirrors", {}))
    if os.environ.get("RADSVD_BASE_URL"):
        m["ebi"] = os.environ["RADSVD_BASE_URL"]
    if os.environ.get("RADSVD_EMPIAR_API"):
        m["empiar_api"] = os.environ["RADSVD_EMPIAR_API"]
    if base_url:
        m["ebi"] = base_url
    return {k: str(v).rstrip("/") for k, v in m.items()}


def expand(url: str, mirror: dict) -> str:
    try:
        return url.format(**mirror)
    except KeyError as exc:
        raise InputError(f"manifest URL {url!r} uses an undefined mirror {exc}") from None


# ---------------------------------------------------------------------------------------------
# HTTP


def _opener(url: str):
    host = urllib.parse.urlsplit(url).hostname or ""
    if host in ("127.0.0.1", "localhost", "::1"):
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()


def _open(url: str, start: int = 0, end: int | None = None, timeout: float = 60.0):
    headers = {"User-Agent": USER_AGENT}
    if start or end is not None:
        headers["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
    req = urllib.request.Request(url, headers=headers)
    try:
        return _opener(url).open(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416:
            raise
        if exc.code >= 500 or exc.code == 429:  # transient: let the caller retry
            raise ConnectionError(f"HTTP {exc.code} {exc.reason} for {url}") from None
        hint = {404: "the file is not at this address (moved or renamed?): check the entry "
                     "page and the manifest URL",
                403: "access denied by the server"}.get(exc.code, "server error; retry later")
        cls = NotFoundError if exc.code in (404, 410) else FetchError
        raise cls(f"HTTP {exc.code} {exc.reason} for {url}: {hint}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ConnectionError(f"cannot reach {url}: {exc}") from exc


def sha256_file(path, limit: int | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = limit
        while True:
            block = f.read(CHUNK if left is None else min(CHUNK, left))
            if not block:
                break
            h.update(block)
            if left is not None:
                left -= len(block)
                if left <= 0:
                    break
    return h.hexdigest()


def _content_range_start(resp) -> int | None:
    cr = resp.headers.get("Content-Range")
    if not cr or not cr.startswith("bytes "):
        return None
    try:
        return int(cr.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _download_to(url: str, part: Path, stop_at: int | None, timeout: float, progress) -> None:
    """Append to ``part`` from its current size (Range) until EOF or ``stop_at`` bytes.

    Connection problems (refused, reset, timeout, body shorter than Content-Length) raise
    ConnectionError with the bytes received so far kept in ``part``.
    """
    import http.client

    have = part.stat().st_size if part.exists() else 0
    if stop_at is not None and have >= stop_at:
        if have > stop_at:  # a longer prefix of the same file: keep what is needed
            with open(part, "r+b") as f:
                f.truncate(stop_at)
        return
    resp = _open(url, start=have, end=stop_at, timeout=timeout)
    with resp:
        status = getattr(resp, "status", 200)
        if status == 206:
            offset = _content_range_start(resp)
            if offset != have:
                raise FetchError(f"{url}: server answered a range from byte {offset}, "
                                 f"asked for {have}")
            mode, got = "ab", have
        else:  # 200: the server sends the whole file; start over
            mode, got = "wb", 0
        length = resp.headers.get("Content-Length")
        expected_end = got + int(length) if length is not None else None
        if stop_at is not None and expected_end is not None:
            expected_end = min(expected_end, stop_at)
        with open(part, mode) as f:
            try:
                while stop_at is None or got < stop_at:
                    want = CHUNK if stop_at is None else min(CHUNK, stop_at - got)
                    block = resp.read(want)
                    if not block:
                        break
                    f.write(block)
                    got += len(block)
                    if progress:
                        progress(len(block))
            except (http.client.HTTPException, OSError) as exc:
                raise ConnectionError(f"{url}: transfer interrupted after {got} bytes "
                                      f"({type(exc).__name__})") from exc
    if expected_end is not None and got < expected_end:
        raise ConnectionError(f"{url}: connection closed after {got} of {expected_end} bytes")


def fetch_file(url: str, dest, sha256: str | None = None, size: int | None = None,
               retries: int = 3, timeout: float = 60.0, progress=None,
               first_bytes: int | None = None) -> Path:
    """Download ``url`` to ``dest`` (verified, atomic, resumable).

    If ``dest`` exists and matches ``size``/``sha256`` it is kept.  ``first_bytes``: fetch
    only that many leading bytes (HTTP Range); size/sha256 then refer to those bytes.
    Raises :class:`FetchError` on a mismatch or a missing file, after ``retries`` attempts
    on connection problems (resuming each time).
    """
    dest = Path(dest)
    if dest.exists() and _matches(dest, sha256, size)[0]:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last = None
    for attempt in range(retries + 1):
        try:
            _download_to(url, part, first_bytes, timeout, progress)
            break
        except ConnectionError as exc:
            last = exc
            time.sleep(min(0.2 * 2 ** attempt, 5.0))
        except urllib.error.HTTPError as exc:  # 416: range not satisfiable
            total = (exc.headers.get("Content-Range") or "").rpartition("/")[2]
            if total.isdigit() and part.exists() and part.stat().st_size == int(total):
                break  # the partial file was already complete: verify it below
            part.unlink(missing_ok=True)  # otherwise restart from scratch
            last = exc
    else:
        have = part.stat().st_size if part.exists() else 0
        raise FetchError(f"{url}: download incomplete after {retries + 1} attempts ({have} bytes "
                         f"kept in {part}; run the command again to resume): {last}")
    if first_bytes is not None and part.stat().st_size < first_bytes:
        got = part.stat().st_size
        part.unlink(missing_ok=True)
        raise FetchError(f"{url}: the file has only {got} bytes, {first_bytes} were needed "
                         "(is it the stack the STAR file refers to?)")
    ok, why = _matches(part, sha256, size)
    if not ok:
        part.unlink(missing_ok=True)
        raise FetchError(
            f"{url}: downloaded file does not match the manifest: {why}. The server's copy "
            "may have been re-issued (EMDB does this) or the download corrupted. Nothing was "
            f"written to {dest}. Retry once; if it persists, compare with the entry page and "
            "update size/sha256 in data_manifest.yaml if the new file is intended")
    os.replace(part, dest)
    return dest


def _matches(path: Path, sha256, size) -> tuple[bool, str]:
    actual = path.stat().st_size
    if size is not None and actual != int(size):
        return False, f"size {actual} bytes, expected {int(size)}"
    if sha256:
        digest = sha256_file(path)
        if digest.lower() != str(sha256).lower():
            return False, f"sha256 {digest}, expected {sha256} (size {actual} bytes)"
    return True, ""


def fetch_bytes(url: str, start: int, stop: int, timeout: float = 60.0) -> bytes:
    """Bytes [start, stop) of ``url`` by an HTTP Range request (falls back to reading the
    stream and slicing if the server ignores Range)."""
    resp = _open(url, start=start, end=stop, timeout=timeout)
    with resp:
        status = getattr(resp, "status", 200)
        first = _content_range_start(resp) if status == 206 else 0
        if first is None:
            first = start
        data = resp.read(stop - first)
    data = data[start - first:]
    if len(data) < stop - start:
        raise FetchError(f"{url}: wanted bytes {start}–{stop}, the file ended after "
                         f"{start + len(data)}")
    return data


# ---------------------------------------------------------------------------------------------
# MRC stacks: only the first images

_MODE_BYTES = {0: 1, 1: 2, 2: 4, 3: 4, 4: 8, 6: 2, 12: 2}


def parse_mrc_header(header: bytes) -> dict:
    """nx, ny, nz, mode, nsymbt and byte order from the 1024-byte MRC header."""
    if len(header) < 1024:
        raise InputError(f"MRC header is {len(header)} bytes, expected 1024")
    stamp = header[212:214]
    order = ">" if stamp[:1] == b"\x11" else "<"
    nx, ny, nz, mode = struct.unpack(order + "4i", header[:16])
    nsymbt = struct.unpack(order + "i", header[92:96])[0]
    if header[208:212] != b"MAP ":
        raise InputError("not an MRC file: no 'MAP ' label at byte 208")
    if mode not in _MODE_BYTES or min(nx, ny, nz) < 1 or nsymbt < 0:
        raise InputError(f"MRC header is corrupt or unsupported: nx={nx} ny={ny} nz={nz} "
                         f"mode={mode} nsymbt={nsymbt}")
    return dict(nx=nx, ny=ny, nz=nz, mode=mode, nsymbt=nsymbt, order=order,
                bytes_per_voxel=_MODE_BYTES[mode])


def fetch_stack_head(url: str, dest, n_images: int, timeout: float = 60.0,
                     retries: int = 3) -> dict:
    """Fetch the first ``n_images`` images of a remote MRC stack into a valid local stack.

    Two Range requests: the header, then header + extended header + images (resumable).
    The local file's nz (and mz) are set to the number of images fetched.  Returns a record.
    """
    dest = Path(dest)
    first = fetch_bytes(url, 0, 1024, timeout)
    if first[:2] == b"\x1f\x8b":  # gzip: no random access; fetch the whole file
        fetch_file(url, dest, retries=retries, timeout=timeout)
        from radsvd.data.io import mrc_info

        info = mrc_info(dest)
        return dict(url=url, path=str(dest), images=info.shape[0],
                    images_in_remote=info.shape[0], box=list(info.shape[1:]),
                    bytes=dest.stat().st_size, sha256=sha256_file(dest), compressed=True)
    try:
        head = parse_mrc_header(first)
    except InputError as exc:
        raise FetchError(f"{url}: {exc}") from None
    if int(n_images) > head["nz"]:
        raise FetchError(f"{url}: the STAR file refers to image {int(n_images)} but the stack "
                         f"holds {head['nz']}: wrong stack or a truncated file on the server")
    k = int(n_images)
    nbytes = 1024 + head["nsymbt"] + k * head["nx"] * head["ny"] * head["bytes_per_voxel"]
    raw = dest.with_name(dest.name + ".head")
    fetch_file(url, raw, size=nbytes, first_bytes=nbytes, retries=retries, timeout=timeout)
    if raw.stat().st_size != nbytes:
        raise FetchError(f"{url}: got {raw.stat().st_size} bytes, expected {nbytes}")
    with atomic_path(dest) as tmp:
        with open(raw, "rb") as src, open(tmp, "wb") as out:
            header = bytearray(src.read(1024))
            struct.pack_into(head["order"] + "i", header, 8, k)    # nz
            struct.pack_into(head["order"] + "i", header, 36, k)   # mz
            out.write(header)
            while True:
                block = src.read(CHUNK)
                if not block:
                    break
                out.write(block)
    raw.unlink()
    return dict(url=url, path=str(dest), images=k, images_in_remote=head["nz"],
                box=[head["ny"], head["nx"]], bytes=nbytes, sha256=sha256_file(dest))


# ---------------------------------------------------------------------------------------------
# directory listings (to locate STAR files when the manifest cannot say where they are)


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            for k, v in attrs:
                if k == "href" and v:
                    self.links.append(v)


def list_directory(url: str, timeout: float = 60.0) -> list[str]:
    """Absolute URLs linked from an HTML directory index (only below ``url``)."""
    if not url.endswith("/"):
        url += "/"
    with _open(url, timeout=timeout) as resp:
        text = resp.read(4 << 20).decode("utf-8", errors="replace")
    p = _Links()
    p.feed(text)
    out = []
    for href in p.links:
        full = urllib.parse.urljoin(url, href)
        if full.startswith(url) and full != url and "?" not in href:
            out.append(full)
    return sorted(set(out))


def find_star_files(url: str, depth: int = 3, timeout: float = 60.0) -> list[str]:
    """STAR files under a directory URL (breadth-first over its HTML indexes, ``depth`` levels)."""
    found, level = [], [url if url.endswith("/") else url + "/"]
    for _ in range(depth):
        nxt = []
        for d in level:
            try:
                links = list_directory(d, timeout)
            except FetchError:
                continue
            found += [u for u in links if u.endswith(".star")]
            nxt += [u for u in links if u.endswith("/")]
        level = nxt
    return found


# ---------------------------------------------------------------------------------------------
# datasets


def _check_map_header(path: Path, expect: dict, url: str) -> None:
    from radsvd.data.io import mrc_info

    info = mrc_info(path)
    problems = []
    if "box" in expect and info.shape != (expect["box"],) * 3:
        problems.append(f"shape {info.shape}, expected {(expect['box'],) * 3}")
    if "voxel_size" in expect and abs(info.voxel_size - expect["voxel_size"]) > 1e-3 * expect["voxel_size"]:
        problems.append(f"voxel size {info.voxel_size:.4f} Å, expected {expect['voxel_size']}")
    if problems:
        bad = path.with_name(path.name + ".unexpected")
        os.replace(path, bad)
        raise FetchError(f"{url}: map header differs from the manifest: {'; '.join(problems)}. "
                         f"The file was moved to {bad}. EMDB may have re-issued the map: check "
                         "the entry's header XML and update data_manifest.yaml if intended")


def fetch_dataset(name: str, dest, manifest=None, n_particles: int | None = None,
                  base_url: str | None = None, what=("map", "particles"),
                  star_url: str | None = None, retries: int = 3, log=print) -> dict:
    """Fetch a dataset of the manifest into ``dest``; returns and writes ``dest/fetched.json``.

    ``what``: "map" (the EMDB reference map) and/or "particles" (the STAR file and the first
    ``n_particles`` images, default the manifest's subset).  ``star_url`` overrides the STAR
    location (needed when the manifest's is unconfirmed and the server has moved it).
    """
    from radsvd.data.io import read_star

    manifest = manifest if isinstance(manifest, dict) else load_manifest(manifest)
    key, ds = resolve_dataset(manifest, name)
    mir = mirrors(manifest, base_url)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    record = {"dataset": key, "title": ds["title"], "files": {}, "manifest": manifest["_path"]}
    for k in ("pixel_size", "box", "contrast_inverted", "empiar", "emdb"):
        if k in ds:
            record[k] = ds[k]
    files = ds["files"]

    if "map" in what and "map" in files:
        f = files["map"]
        url = expand(f["urls"][0], mir)
        local = dest / (f.get("filename") or url.rsplit("/", 1)[-1])
        log(f"fetching map {url}")
        fetch_file(url, local, sha256=f.get("sha256"), size=f.get("size"), retries=retries)
        if f.get("header"):
            _check_map_header(local, f["header"], url)
        record["files"]["map"] = {"url": url, "path": str(local), "sha256": sha256_file(local)}

    if "particles" in what and "star" in files:
        f = files["star"]
        n = int(n_particles or ds.get("particles", {}).get("first", 1024))
        candidates = [star_url] if star_url else [expand(u, mir) for u in f["urls"]]
        star_local, used, errors = None, None, []
        for url in candidates:
            local = dest / "particles" / url.rsplit("/", 1)[-1]
            try:
                log(f"fetching STAR {url}")
                fetch_file(url, local, sha256=f.get("sha256"), size=f.get("size"),
                           retries=retries)
                star_local, used = local, url
                break
            except FetchError as exc:
                errors.append(str(exc))
        if star_local is None:
            hint = ""
            if ds.get("empiar"):
                root = f"{mir.get('ebi', '')}/empiar/world_availability/{ds['empiar']}/data/"
                try:
                    stars = find_star_files(root, depth=3)
                    hint = ("; STAR files found under the entry: " + ", ".join(stars[:10])
                            if stars else f"; no STAR file found under {root}")
                except (FetchError, ConnectionError) as exc:
                    hint = f"; listing {root} failed too ({exc})"
            raise FetchError(f"dataset {key}: the particle STAR file was not found at "
                             f"{', '.join(candidates)} ({' | '.join(errors)}){hint}. Pass the "
                             "right address with --star-url (and fix data_manifest.yaml)")
        table = read_star(star_local)
        sub = table.iloc[:n]
        bases = _stack_bases(used, ds, mir)
        stacks = {}
        for rel, rows in sub.groupby("image_path", sort=False).indices.items():
            need = int(sub["image_index"].to_numpy()[rows].max()) + 1
            local = star_local.parent / rel
            if local.exists() and _stack_has(local, need):
                stacks[rel] = {"path": str(local), "images": need, "reused": True}
                continue
            tried = []
            for base in list(bases):
                remote = urllib.parse.urljoin(base, rel)
                try:
                    log(f"fetching first {need} image(s) of {remote}")
                    stacks[rel] = fetch_stack_head(remote, local, need, retries=retries)
                except NotFoundError:
                    tried.append(remote)
                    continue
                bases.remove(base)
                bases.insert(0, base)  # image paths of one file share their base
                break
            else:
                raise FetchError(f"dataset {key}: stack {rel!r} (referenced by {used}) was not "
                                 f"found at {', '.join(tried)}. RELION paths are relative to "
                                 "the project directory: set particles.stacks_base in "
                                 "data_manifest.yaml to the URL they are relative to")
        record["files"]["star"] = {"url": used, "path": str(star_local),
                                   "sha256": sha256_file(star_local),
                                   "style": table.attrs.get("style")}
        record["particles"] = {"first": int(len(sub)), "stacks": stacks}
    out = dest / "fetched.json"
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    return record


def _stack_bases(star_url: str, ds: dict, mir: dict) -> list[str]:
    """Where relative image paths may start: the manifest's particles.stacks_base, then the
    STAR file's directory and its parents up to the EMPIAR entry's data/ directory."""
    bases = []
    explicit = ds.get("particles", {}).get("stacks_base")
    if explicit:
        bases.append(expand(explicit, mir).rstrip("/") + "/")
    d = star_url.rsplit("/", 1)[0] + "/"
    for _ in range(4):
        bases.append(d)
        if d.rstrip("/").endswith("/data") or d.count("/") <= 3:
            break
        d = d.rstrip("/").rsplit("/", 1)[0] + "/"
    return list(dict.fromkeys(bases))


def _stack_has(path: Path, need: int) -> bool:
    try:
        from radsvd.data.io import mrc_info

        return mrc_info(path).shape[0] >= need
    except (InputError, FileNotFoundError):
        return False
