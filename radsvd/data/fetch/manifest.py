"""The data manifest: where each dataset of the paper lives and what its files must be.

The manifest ships inside the package (``radsvd/data/data_manifest.yaml``, found by a plain
``pip install``); the repository's top-level ``data_manifest.yaml`` is the same file (a test
keeps them identical).  ``RADSVD_MANIFEST`` or ``--manifest`` name another one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from radsvd._validate import InputError

from .transport import check_url

PACKAGED = Path(__file__).resolve().parents[1] / "data_manifest.yaml"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def manifest_path() -> Path:
    """``RADSVD_MANIFEST`` if set, else the packaged manifest."""
    env = os.environ.get("RADSVD_MANIFEST")
    return Path(env) if env else PACKAGED


def _check_file_entry(path, name, fname, f) -> None:
    where = f"{path}: dataset {name!r} file {fname!r}"
    if not isinstance(f, dict):
        raise InputError(f"{where} must be a mapping")
    urls = f.get("urls", [])
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise InputError(f"{where}: 'urls' must be a list of strings")
    if not urls and not f.get("names"):
        raise InputError(f"{where} has neither 'urls' nor 'names'")
    sha = f.get("sha256")
    if sha is not None and not (isinstance(sha, str) and _SHA256.fullmatch(sha.lower())):
        raise InputError(f"{where}: sha256 must be a quoted string of 64 hex digits, got "
                         f"{sha!r} (YAML reads an unquoted all-digit hash as a number: "
                         "quote it)")
    size = f.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise InputError(f"{where}: size must be a positive integer (bytes), got {size!r}")
    names = f.get("names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) and n and "/" not in n
                                              for n in names):
        raise InputError(f"{where}: 'names' must be a list of plain file names")


def _positive(path, name, key, v, allow_none=True) -> None:
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        raise InputError(f"{path}: dataset {name!r}: {key} must be a positive number, got {v!r}")


def load_manifest(path=None) -> dict:
    """The manifest as a dict, validated for every field the fetcher reads."""
    import yaml

    path = Path(path) if path is not None else manifest_path()
    if not path.is_file():
        raise InputError(f"{path}: no manifest file there (RADSVD_MANIFEST / --manifest)")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("datasets"), dict):
        raise InputError(f"{path}: a manifest needs a top-level 'datasets' mapping")
    for name, ds in data["datasets"].items():
        if not isinstance(ds, dict):
            raise InputError(f"{path}: dataset {name!r} must be a mapping")
        for key in ("title", "files"):
            if key not in ds:
                raise InputError(f"{path}: dataset {name!r} lacks {key!r}")
        if not isinstance(ds["files"], dict):
            raise InputError(f"{path}: dataset {name!r}: 'files' must be a mapping")
        for fname, f in ds["files"].items():
            _check_file_entry(path, name, fname, f)
        _positive(path, name, "pixel_size", ds.get("pixel_size"))
        _positive(path, name, "box", ds.get("box"))
        parts = ds.get("particles", {}) or {}
        first = parts.get("first", 1024)
        if isinstance(first, bool) or not isinstance(first, int) or first < 1:
            raise InputError(f"{path}: dataset {name!r}: particles.first must be an integer "
                             f">= 1, got {first!r}")
        ctf = ds.get("ctf_defaults") or {}
        unknown = set(ctf) - {"voltage", "cs", "amplitude_contrast"}
        if unknown:
            raise InputError(f"{path}: dataset {name!r}: ctf_defaults knows voltage, cs and "
                             f"amplitude_contrast, not {sorted(unknown)}")
        for k, v in ctf.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise InputError(f"{path}: dataset {name!r}: ctf_defaults.{k} must be a "
                                 f"number >= 0, got {v!r}")
    data["_path"] = str(path)
    return data


def resolve_dataset(manifest: dict, name: str) -> tuple[str, dict]:
    """Find a dataset by key or alias (case-insensitive: 'trpv1', 'EMPIAR-10005', 'EMD-5778')."""
    want = str(name).lower()
    for key, ds in manifest["datasets"].items():
        if want == key.lower() or want in (str(a).lower() for a in ds.get("aliases", [])):
            return key, ds
    known = ", ".join(manifest["datasets"])
    synth = manifest.get("synthetic", {}) or {}
    if name in synth:
        raise InputError(f"{name!r} is a synthetic preset: nothing to download; use "
                         f"`radsvd simulate --molecule {synth[name].get('molecule', name)}`")
    raise InputError(f"unknown dataset {name!r}; the manifest lists: {known}")


def mirrors(manifest: dict, base_url: str | None = None) -> dict:
    """The mirror bases: the manifest's, overridden by RADSVD_BASE_URL / RADSVD_EMPIAR_API
    and ``base_url``; each must be an http(s) URL."""
    m = dict(manifest.get("mirrors", {}) or {})
    if os.environ.get("RADSVD_BASE_URL"):
        m["ebi"] = os.environ["RADSVD_BASE_URL"]
    if os.environ.get("RADSVD_EMPIAR_API"):
        m["empiar_api"] = os.environ["RADSVD_EMPIAR_API"]
    if base_url:
        m["ebi"] = base_url
    for k, v in m.items():
        check_url(v, f"mirror {k!r} base URL")
    return {k: str(v).rstrip("/") for k, v in m.items()}


def expand(url: str, mirror: dict) -> str:
    try:
        return url.format(**mirror)
    except (KeyError, IndexError, ValueError) as exc:
        raise InputError(f"manifest URL {url!r} uses an undefined mirror ({exc})") from None
