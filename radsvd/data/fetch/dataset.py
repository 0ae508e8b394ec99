"""One dataset of the manifest end to end: the EMDB map, the particle STAR file and only the
images it needs of each stack, all verified, into a destination folder.

Every remote-derived path (STAR image references, file names from URLs) is resolved inside
the destination; absolute paths and ``..`` escapes are refused.  The first good download of
each file is recorded in ``<dest>/fetch-ledger.json`` (sha256) and checked on reuse and on
later downloads: a changed file is an error unless ``accept_changed`` (``--accept-changed``).
The record ``<dest>/fetched.json`` lists the files, their hashes, the pixel size and where
it came from, and any CTF values supplied by the manifest ("supplied, not read").
"""

from __future__ import annotations

import contextlib
import html.parser
import json
import os
import struct
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath, PureWindowsPath

from radsvd._files import atomic_path
from radsvd._validate import InputError
from radsvd.data import _gzip
from radsvd.data.star import OPTICS_LABELS

from .manifest import expand, load_manifest, mirrors, resolve_dataset
from .transport import (
    ChecksumError,
    FetchError,
    Limits,
    NotFoundError,
    _Clock,
    _open,
    _read_into,
    _retrying,
    _Transient,
    check_url,
    fetch_bytes,
    fetch_file,
    sha256_file,
)
from .validate import check_mrc_file, check_star_file, expected_size, read_header

try:
    import fcntl
except ImportError:
    fcntl = None

FETCH_RECORD = "fetched.json"
LEDGER = "fetch-ledger.json"
PIXEL_RTOL = 0.01


# ---------------------------------------------------------------------------------------------
# paths


def inside(root: Path, rel: str, base: Path | None = None, what: str = "path") -> Path:
    """``base / rel`` (base defaults to ``root``), refused unless it stays inside ``root``."""
    rel = str(rel)
    if not rel or "\0" in rel:
        raise InputError(f"{what} {rel!r}: empty or not a file name")
    if "://" in rel:
        raise InputError(f"{what} {rel!r} is a URL, not a relative path: refusing it")
    if PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).is_absolute() \
            or PureWindowsPath(rel).drive:
        raise InputError(f"{what} {rel!r} is absolute: refusing to write outside {root}")
    root_r = Path(root).resolve()
    target = (Path(base) if base is not None else Path(root)) / rel
    if not target.resolve().is_relative_to(root_r):
        raise InputError(f"{what} {rel!r} leads outside {root}: refusing to write there")
    return target


def _name_from_url(url: str) -> str:
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise InputError(f"{url}: the URL does not end in a file name")
    return name


# ---------------------------------------------------------------------------------------------
# ledger of first good downloads


class _Ledger:
    """sha256 of the first good download of each file under ``dest`` (relative paths)."""

    def __init__(self, dest: Path):
        self.path = dest / LEDGER
        self.lock_path = dest / ".fetch-ledger.lock"

    @contextlib.contextmanager
    def _locked(self):
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0),
                     0o666)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (ValueError, UnicodeDecodeError) as exc:
            raise FetchError(f"{self.path}: not a readable ledger ({exc}); remove it to "
                             "start the record of hashes afresh") from None
        return data if isinstance(data, dict) else {}

    def get(self, rel: str) -> str | None:
        entry = self._read().get(rel)
        return entry.get("sha256") if isinstance(entry, dict) else None

    def put(self, rel: str, sha256: str, url: str) -> None:
        with self._locked():
            data = self._read()
            data[rel] = {"sha256": sha256, "url": url,
                         "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            with atomic_path(self.path) as tmp:
                tmp.write_text(json.dumps(data, indent=1, sort_keys=True))


def _checked_fetch(url, local: Path, rel: str, ledger: _Ledger, manifest_sha, limits, log,
                   accept_changed: bool, validate, entry: dict) -> None:
    """fetch_file against the manifest's sha256, else the ledger's; record the result."""
    expected = (str(manifest_sha).lower() if manifest_sha else None) or ledger.get(rel)
    source = "the manifest's" if manifest_sha else "the first download's"
    try:
        fetch_file(url, local, sha256=expected, limits=limits, validate=validate)
    except ChecksumError as exc:
        if not accept_changed:
            raise FetchError(
                f"{url}: sha256 {exc.actual} differs from {source} {exc.expected}. The archive "
                "may have re-issued the file (EMDB does this for maps) or the download was "
                "corrupted. Nothing was replaced. To accept the new file, run again with "
                "--accept-changed (fetch_dataset(accept_changed=True)): it is then validated "
                "and its hash recorded in fetched.json and the ledger") from None
        log(f"accepting a changed file: {url} has sha256 {exc.actual}, {source} was "
            f"{exc.expected}")
        fetch_file(url, local, limits=limits, validate=validate, reuse=False)
        entry["replaced_sha256"] = exc.expected
    sha = sha256_file(local)
    entry.update(url=url, path=str(local), sha256=sha)
    if expected is None or sha != expected:
        ledger.put(rel, sha, url)


# ---------------------------------------------------------------------------------------------
# MRC stacks: only the first images


def fetch_stack_head(url: str, dest, n_images: int, limits: Limits | None = None) -> dict:
    """Fetch the first ``n_images`` images of a remote MRC stack into a valid local stack.

    A header probe (1024 bytes), checked against the remote size, then one Range request for
    header + extended header + images (resumable); the local file's nz and mz are set to the
    number of images.  Gzip stacks cannot be cut: the whole file is fetched and validated.
    """
    limits = limits or Limits()
    dest = Path(dest)
    k = int(n_images)
    first, total = fetch_bytes(url, 0, 1024, limits, with_size=True)
    if first[:2] == _gzip.GZIP_MAGIC:
        kept = fetch_file(url, dest, limits=limits,
                          validate=lambda p: check_mrc_file(p, source=url))
        head = read_header(_gzip.read_head(kept, 1024), url)
        if k > head.nz:
            raise FetchError(f"{url}: the STAR file refers to image {k} but the stack holds "
                             f"{head.nz}")
        return {"url": url, "path": str(dest), "images": head.nz, "images_in_remote": head.nz,
                "box": [head.ny, head.nx], "bytes": dest.stat().st_size,
                "sha256": sha256_file(dest), "compressed": True}
    try:
        head = read_header(first, url)
    except InputError as exc:
        raise FetchError(str(exc)) from None
    if total is not None and total != expected_size(head):
        raise FetchError(f"{url}: the server holds {total} bytes, the MRC header promises "
                         f"{expected_size(head)}: not an MRC stack, or a truncated one")
    if k > head.nz:
        raise FetchError(f"{url}: the STAR file refers to image {k} but the stack holds "
                         f"{head.nz}: wrong stack or a truncated file on the server")
    nbytes = head.data_offset + k * head.nx * head.ny * head.dtype.itemsize

    def cut(path):  # the local file holds k images: say so in its header
        with open(path, "r+b") as f:
            for offset in (8, 36):  # nz, mz
                f.seek(offset)
                f.write(struct.pack(head.byte_order + "i", k))

    fetch_file(url, dest, first_bytes=nbytes, limits=limits, validate=cut, reuse=False)
    return {"url": url, "path": str(dest), "images": k, "images_in_remote": head.nz,
            "box": [head.ny, head.nx], "bytes": nbytes, "sha256": sha256_file(dest)}


def _local_stack_ok(path: Path, need: int, sha: str | None) -> bool:
    """A local stack holding at least ``need`` images, matching the ledger if it knows it."""
    if not path.is_file() or path.is_symlink():
        return False
    if sha is not None:
        return sha256_file(path) == sha and _images_in(path) >= need
    try:
        head = check_mrc_file(path)
    except (InputError, OSError):
        return False
    return head.nz >= need


def _images_in(path: Path) -> int:
    try:
        return check_mrc_file(path).nz
    except (InputError, OSError):
        return 0


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


def list_directory(url: str, limits: Limits | None = None) -> list[str]:
    """Absolute URLs linked from an HTML directory index (only below ``url``)."""
    limits = limits or Limits()
    if not url.endswith("/"):
        url += "/"
    with _Clock(url, limits) as clock:
        def attempt():
            with _open(url, clock) as resp:
                buf = bytearray()
                _read_into(resp, buf.extend, 16 << 20, clock, url, 0)
                return bytes(buf)

        try:
            raw = _retrying(clock, attempt)
        except _Transient as exc:
            raise FetchError(str(exc)) from None
    p = _Links()
    p.feed(raw.decode("utf-8", errors="replace"))
    out = []
    for href in p.links:
        full = urllib.parse.urljoin(url, href)
        if full.startswith(url) and full != url and "?" not in href:
            out.append(full)
    return sorted(set(out))


def find_star_files(url: str, depth: int = 4, limits: Limits | None = None,
                    max_listings: int = 200) -> list[str]:
    """STAR files under a directory URL, breadth-first over its HTML indexes (``depth``
    levels, at most ``max_listings`` index pages), shallowest first."""
    found, level, listed = [], [url if url.endswith("/") else url + "/"], 0
    for _ in range(depth):
        nxt = []
        for d in level:
            if listed >= max_listings:
                return found
            listed += 1
            try:
                links = list_directory(d, limits)
            except FetchError:
                continue
            found += [u for u in links if u.endswith(".star")]
            nxt += [u for u in links if u.endswith("/")]
        level = nxt
    return found


# ---------------------------------------------------------------------------------------------
# datasets


def _check_n(n) -> int | None:
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"fetch: the number of particles must be an integer >= 1, got {n!r}")
    return n


def _entry_root(ds: dict, mir: dict) -> str | None:
    if ds.get("empiar") and mir.get("ebi"):
        return f"{mir['ebi']}/empiar/world_availability/{ds['empiar']}/data/"
    return None


def _fetch_star(key, ds, mir, dest, ledger, star_url, limits, log, accept_changed):
    f = ds["files"]["star"]
    candidates = [check_url(star_url, "--star-url")] if star_url else \
        [expand(u, mir) for u in f.get("urls", [])]
    names = list(f.get("names", []))
    errors = []

    def attempt(url):
        rel = "particles/" + _name_from_url(url)
        local = inside(dest, rel, what="STAR file name")
        entry = {}
        log(f"fetching STAR {url}")
        _checked_fetch(url, local, rel, ledger, f.get("sha256"), limits, log, accept_changed,
                       lambda p: check_star_file(p, source=url), entry)
        return local, url, entry

    for url in candidates:
        try:
            return attempt(url)
        except NotFoundError as exc:
            errors.append(str(exc))
    root = _entry_root(ds, mir)
    found, hint = [], ""
    if root and not star_url:
        try:
            found = find_star_files(root, limits=limits)
        except FetchError as exc:
            hint = f"; listing {root} failed too ({exc})"
        for name in names:  # the manifest knows the name, not the folder
            hits = [u for u in found if _name_from_url(u) == name]
            if hits:
                log(f"STAR {name} found by listing the entry: {hits[0]}"
                    + (f" (also at {', '.join(hits[1:3])})" if len(hits) > 1 else ""))
                local, url, entry = attempt(hits[0])
                entry["found_by_listing"] = True
                return local, url, entry
        if not hint:
            hint = ("; STAR files found under the entry: " + ", ".join(found[:10])
                    if found else f"; no STAR file found under {root}")
    tried = ", ".join(candidates) or "(no URL in the manifest)"
    wanted = f" named {' or '.join(names)}" if names else ""
    raise FetchError(f"dataset {key}: the particle STAR file{wanted} was not found at {tried} "
                     f"({' | '.join(errors) or 'nothing tried'}){hint}. Pass the right address "
                     "with --star-url (and fix data_manifest.yaml)")


def _stack_bases(star_url: str, ds: dict, mir: dict) -> list[str]:
    """Where relative image paths may start: the manifest's particles.stacks_base, then the
    STAR file's directory and its parents up to the EMPIAR entry's data/ directory."""
    bases = []
    explicit = (ds.get("particles") or {}).get("stacks_base")
    if explicit:
        bases.append(expand(explicit, mir).rstrip("/") + "/")
    d = star_url.rsplit("/", 1)[0] + "/"
    for _ in range(4):
        bases.append(d)
        if d.rstrip("/").endswith("/data") or d.count("/") <= 3:
            break
        d = d.rstrip("/").rsplit("/", 1)[0] + "/"
    return list(dict.fromkeys(bases))


def _stem_twins(rel: str) -> list[str]:
    """The referenced name, then the same stem with the other MRC extension."""
    if rel.endswith(".mrcs"):
        return [rel, rel[:-1]]
    if rel.endswith(".mrc"):
        return [rel, rel + "s"]
    return [rel]


def _fetch_stacks(key, table, star_local, used, ds, mir, dest, ledger, limits, log):
    bases = _stack_bases(used, ds, mir)
    stacks = {}
    for rel, rows in table.groupby("image_path", sort=False).indices.items():
        need = int(table["image_index"].to_numpy()[rows].max()) + 1
        local = inside(dest, rel, base=star_local.parent, what="image path in the STAR file")
        lrel = local.resolve().relative_to(dest.resolve()).as_posix()
        sha = ledger.get(lrel)
        if _local_stack_ok(local, need, sha):
            stacks[rel] = {"path": str(local), "images": need, "reused": True}
            continue
        tried = []
        for base in list(bases):
            done = None
            for name in _stem_twins(rel):
                remote = urllib.parse.urljoin(base, name)
                try:
                    log(f"fetching first {need} image(s) of {remote}")
                    done = fetch_stack_head(remote, local, need, limits)
                except NotFoundError:
                    tried.append(remote)
                    continue
                if name != rel:
                    log(f"stack {rel!r} is not on the server; took {name!r} of the same stem "
                        f"(saved as {local.name}, the name the STAR file uses)")
                    done["remote_name"] = name
                break
            if done is not None:
                stacks[rel] = done
                ledger.put(lrel, done["sha256"], done["url"])
                bases.remove(base)
                bases.insert(0, base)  # image paths of one file share their base
                break
        else:
            raise FetchError(f"dataset {key}: stack {rel!r} (referenced by {used}) was not "
                             f"found at {', '.join(tried)}. RELION paths are relative to the "
                             "project directory: set particles.stacks_base in "
                             "data_manifest.yaml to the URL they are relative to")
    return stacks


def _particle_metadata(key, ds, table, log) -> dict:
    """Pixel size (STAR vs manifest, 1% check) and CTF values the STAR lacks."""
    out = {}
    manifest_px = ds.get("pixel_size")
    star_px = table["pixel_size"].dropna() if "pixel_size" in table.columns else None
    if star_px is not None and len(star_px):
        px = float(star_px.iloc[0])
        if manifest_px and abs(px - manifest_px) > PIXEL_RTOL * manifest_px:
            raise FetchError(f"dataset {key}: the STAR file gives a pixel size of {px:.4f} Å, "
                             f"the manifest {manifest_px} Å (more than {PIXEL_RTOL:.0%} apart): "
                             "wrong STAR file, or a binned stack; check the entry and fix "
                             "pixel_size in data_manifest.yaml")
        out["pixel_size"], out["pixel_size_source"] = px, "star"
    elif manifest_px:
        out["pixel_size"], out["pixel_size_source"] = float(manifest_px), \
            "manifest (supplied, not read)"
        log(f"{key}: the STAR file gives no pixel size; using the manifest's {manifest_px} Å")
    else:
        raise FetchError(f"dataset {key}: neither the STAR file nor the manifest gives a pixel "
                         "size")
    missing = [k for k in OPTICS_LABELS if k not in table.columns or table[k].isna().any()]
    defaults = ds.get("ctf_defaults") or {}
    lacking = [k for k in missing if k not in defaults]
    if lacking:
        raise FetchError(f"dataset {key}: the STAR file lacks CTF column(s) "
                         f"{', '.join(OPTICS_LABELS[k] for k in lacking)} and the manifest has no "
                         "ctf_defaults for them")
    if missing:
        out["ctf_supplied"] = {k: float(defaults[k]) for k in missing}
        out["ctf_supplied_note"] = "supplied, not read: from the manifest's ctf_defaults"
        log(f"{key}: CTF value(s) {out['ctf_supplied']} supplied by the manifest (the STAR "
            "file lacks them)")
    for k in ("defocus_u", "defocus_v"):
        if k not in table.columns or table[k].isna().any():
            raise FetchError(f"dataset {key}: the STAR file has no usable {k} column")
    return out


def fetch_dataset(name: str, dest, manifest=None, n_particles: int | None = None,
                  base_url: str | None = None, what=("map", "particles"),
                  star_url: str | None = None, retries: int = 3, log=print,
                  limits: Limits | None = None, accept_changed: bool = False) -> dict:
    """Fetch a dataset of the manifest into ``dest``; returns and writes ``dest/fetched.json``.

    ``what``: "map" (the EMDB reference map) and/or "particles" (the STAR file and the first
    ``n_particles`` images, default the manifest's subset).  ``star_url`` overrides the STAR
    location.  ``limits``: read timeout, total deadline per file and retries (default: 30 s,
    1 h, ``retries``).  ``accept_changed``: accept a file whose sha256 differs from the
    manifest's or the first download's (a re-issued map), recording both hashes.

    Parameters
    ----------
    name : str
        A dataset key or alias of the manifest ("trpv1", "EMPIAR-10005", "EMD-5778", …).
    dest : str or Path
        Destination folder; every file is confined to it.
    manifest : dict or str or Path, optional
        The dataset manifest; default the one shipped with radsvd.
    n_particles : int, optional
        Number of particle images to fetch; default the manifest's subset.
    base_url : str, optional
        Mirror base overriding the manifest's (also ``RADSVD_BASE_URL``).
    what : sequence of {"map", "particles"}
        What to fetch.
    star_url : str, optional
        Location of the STAR file, overriding the manifest's.
    retries : int
        Retries of a failed request, within the deadline (when ``limits`` is not given).
    log : callable
        Progress messages.
    limits : Limits, optional
        Read timeout, total deadline per file and retries (``radsvd.data.fetch``).
    accept_changed : bool
        Accept a file whose sha256 differs from the recorded one.

    Returns
    -------
    dict
        The record written to ``dest/fetched.json``: the files, their hashes, the pixel
        size and where it came from, and any CTF values supplied by the manifest.

    Examples
    --------
    Downloads need the network; a synthetic preset is refused with the command to use
    instead, before anything is written:

    >>> radsvd.fetch_dataset("trpv1-like", "data")
    Traceback (most recent call last):
    ...
    radsvd._validate.InputError: 'trpv1-like' is a synthetic preset: nothing to download; use `radsvd simulate --molecule trpv1-like`
    """
    from radsvd.data.star import read_star

    limits = limits or Limits(retries=retries)
    n = _check_n(n_particles)
    if star_url is not None:
        check_url(star_url, "--star-url")
    manifest = manifest if isinstance(manifest, dict) else load_manifest(manifest)
    key, ds = resolve_dataset(manifest, name)
    mir = mirrors(manifest, base_url)
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise InputError(f"--dest {dest} exists and is not a directory")
    dest.mkdir(parents=True, exist_ok=True)
    ledger = _Ledger(dest)
    record = {"dataset": key, "title": ds["title"], "files": {}, "manifest": manifest["_path"]}
    for k in ("pixel_size", "box", "contrast_inverted", "empiar", "emdb"):
        if k in ds:
            record[k] = ds[k]
    files = ds["files"]

    if "map" in what and "map" in files:
        f = files["map"]
        url = expand(f["urls"][0], mir)
        rel = f.get("filename") or _name_from_url(url)
        local = inside(dest, rel, what="map file name")
        entry = {}
        log(f"fetching map {url}")
        _checked_fetch(url, local, rel, ledger, f.get("sha256"), limits, log, accept_changed,
                       lambda p: check_mrc_file(p, f.get("header"), source=url), entry)
        record["files"]["map"] = entry

    if "particles" in what and "star" in files:
        n = n or int((ds.get("particles") or {}).get("first", 1024))
        star_local, used, entry = _fetch_star(key, ds, mir, dest, ledger, star_url, limits,
                                              log, accept_changed)
        table = read_star(star_local, require_ctf=False)
        sub = table.iloc[:n]
        entry["style"] = table.attrs.get("style")
        record["files"]["star"] = entry
        record.update(_particle_metadata(key, ds, sub, log))
        stacks = _fetch_stacks(key, sub, star_local, used, ds, mir, dest, ledger, limits, log)
        record["particles"] = {"first": len(sub), "stacks": stacks}
    with atomic_path(dest / FETCH_RECORD) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    return record


def load_fetched(record, n: int | None = None, dtype=None):
    """Images and normalised particle table of a fetched dataset (``fetched.json`` or its
    dict), with the manifest's supplied CTF values and pixel size filled in where the STAR
    file lacks them (the record says which)."""
    import numpy as np

    from radsvd.data.stacks import load_particles

    from radsvd.data.star import read_star

    if not isinstance(record, dict):
        record = json.loads(Path(record).read_text())
    star = record["files"]["star"]["path"]
    table = read_star(star, require_ctf=False)
    for k, v in (record.get("ctf_supplied") or {}).items():
        table[k] = table[k].fillna(v) if k in table.columns else float(v)
    if record.get("pixel_size") is not None:
        px = float(record["pixel_size"])
        table["pixel_size"] = table["pixel_size"].fillna(px) if "pixel_size" in table.columns \
            else px
    table.attrs.update(style=table.attrs.get("style"), path=str(star))
    return load_particles(table, n=n, dtype=dtype or np.float32)
