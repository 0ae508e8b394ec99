"""Long ``align-particles`` runs: checkpoints, shards and their merge.

- :class:`Checkpoint`: a folder beside the output holding ``manifest.json`` (the run's
  fingerprint: hashes of the inputs and every option that changes a result) and one
  ``chunk-START-STOP.npz`` per finished chunk of STAR rows, each written atomically
  (:func:`radsvd._files.save_npz`).  A rerun continues after the last contiguous chunk; a
  fingerprint that differs is refused naming what differs.  The chunk size, thread count and
  memory budget are not part of the fingerprint: results do not depend on them.
- :func:`shard_range`: the I-th of N contiguous slices of the selected rows.
- :func:`merge_poses`: the shards' .npz files joined and written exactly as the unsharded run
  writes its outputs (:func:`write_outputs`), so the STAR files are the same bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from radsvd._validate import InputError, InputWarning


RESULT_KEYS = ("best_target", "angle", "score", "shift", "ctf_group")


@dataclass
class ParticlePoses:
    """Poses (rot, tilt, psi, shift_x, shift_y in RELION units), scores and the raw results of
    the particles at STAR rows ``rows`` (0-based, skipped particles left out); ``skipped``:
    (row, image name, reason) of the particles that could not be aligned; ``extra``:
    per-particle arrays of a ``post_chunk`` hook."""

    poses: pd.DataFrame
    score: np.ndarray
    best_target: np.ndarray
    angle: np.ndarray
    shift: np.ndarray              # pixels of the aligned (preprocessed) images
    ctf_group: np.ndarray
    template_rotations: np.ndarray
    info: dict = field(default_factory=dict)
    rows: np.ndarray | None = None
    skipped: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)   # seconds, chunk, resumed_at, … (not saved)

    def save_npz(self, path) -> None:
        from radsvd._files import save_npz

        arrays = {f"info_{k}": np.asarray(v) for k, v in self.info.items()}
        arrays.update({f"extra_{k}": np.asarray(v) for k, v in self.extra.items()})
        rows = np.arange(len(self.score)) if self.rows is None else self.rows
        save_npz(path, best_target=self.best_target, angle=self.angle, shift=self.shift,
                 score=self.score, ctf_group=self.ctf_group,
                 template_rotations=self.template_rotations, rows=rows,
                 skipped_rows=np.array([s[0] for s in self.skipped], np.int64),
                 skipped_reasons=np.array([f"{s[1]}: {s[2]}" for s in self.skipped], str),
                 rot=self.poses["rot"].to_numpy(), tilt=self.poses["tilt"].to_numpy(),
                 psi=self.poses["psi"].to_numpy(), origin_x_A=self.poses["shift_x"].to_numpy(),
                 origin_y_A=self.poses["shift_y"].to_numpy(), **arrays)


__all__ = ["Checkpoint", "likelihood_chunk", "merge_poses", "parse_shard", "run_fingerprint",
           "shard_range", "write_likelihoods", "write_outputs"]

# option -> the name a user knows it by
OPTION_NAMES = dict(K="--K", rank="--rank", method="--method", max_shift_A="--max-shift",
                    shift_step_A="--shift-step", sigma_A="--sigma", box="--box", n="--n",
                    refine="--refine", invert="--invert", ignore_origins="--ignore-origins",
                    no_ctf="--no-ctf", voltage="--voltage", cs="--cs",
                    amplitude_contrast="--amplitude-contrast", ctf_tolerance="--ctf-tolerance",
                    precision="--precision", no_fix_edges="--no-fix-edges",
                    strict="--strict", shard="--shard", refine_levels="--refine-levels",
                    refine_candidates="--refine-candidates", likelihoods="--likelihoods",
                    noise_sigma="--noise-sigma")
_CHUNK_RE = re.compile(r"^chunk-(\d{12})-(\d{12})\.npz$")
_DECISION_RE = re.compile(r"^decision-[a-z_]+\.json$")
_LIKELIHOOD_RE = re.compile(r"^likelihoods-(\d{12})-(\d{12})\.npz$")
LIKELIHOOD_KEYS = ("maximum", "integrated", "sigma")


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` → (I, N), 1 ≤ I ≤ N."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m:
        raise InputError(f"--shard must be I/N (e.g. 2/8), got {text!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if not 1 <= i <= n:
        raise InputError(f"--shard {i}/{n} is out of range: need 1 <= I <= N")
    return i, n


def shard_range(n_rows: int, shard) -> tuple[int, int]:
    """Rows [lo, hi) of shard (I, N) of ``n_rows`` rows: lo = ⌊(I−1)·n/N⌋, hi = ⌊I·n/N⌋
    (contiguous, covering every row once); (0, n_rows) for None."""
    if shard is None:
        return 0, int(n_rows)
    i, n = int(shard[0]), int(shard[1])
    if not 1 <= i <= n:
        raise InputError(f"--shard {i}/{n} is out of range: need 1 <= I <= N")
    if n > n_rows:
        raise InputError(f"--shard {i}/{n}: {n} shards of {n_rows} particle(s) would leave "
                         f"some empty; use at most {n_rows} shards")
    return (i - 1) * n_rows // n, i * n_rows // n


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_fingerprint(star, map_path, stacks, options: dict) -> dict:
    """What a checkpoint must match: SHA-256 of the STAR file and the map, the stacks' names,
    sizes and modification times (hashing terabytes of stacks would cost more than the run),
    the radsvd version and the options (:data:`OPTION_NAMES`)."""
    from radsvd import __version__

    h = hashlib.sha256()
    for path in sorted(set(map(str, stacks))):
        st = os.stat(path)
        h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    fp = {"particles STAR": _sha256(star), "map": _sha256(map_path),
          "stacks (names, sizes, times)": h.hexdigest(), "radsvd version": __version__}
    for key, value in options.items():
        fp[OPTION_NAMES.get(key, key)] = _plain(value)
    return fp


def _plain(value):
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    return value


def fingerprint_json(fp: dict, without=()) -> str:
    return json.dumps({k: v for k, v in fp.items() if k not in without}, sort_keys=True)


def _differences(a: dict, b: dict) -> list:
    def show(v):
        return "default" if v is None else str(v)

    return [f"{k} ({show(a.get(k))} then, {show(b.get(k))} now)"
            if not k.startswith(("particles STAR", "map", "stacks")) else f"{k} changed"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


class Checkpoint:
    """The checkpoint folder of one run over rows [lo, hi) (module doc)."""

    MANIFEST = "manifest.json"

    def __init__(self, folder, fingerprint: dict, lo: int, hi: int, restart: bool = False):
        from radsvd._files import atomic_path, check_output_folder

        self.folder = Path(folder)
        self.lo, self.hi = int(lo), int(hi)
        self.fingerprint = json.loads(fingerprint_json(fingerprint))
        check_output_folder(self.folder, "checkpoint folder")
        if restart:
            self.remove()
        manifest = self.folder / self.MANIFEST
        if manifest.exists():
            try:
                old = json.loads(manifest.read_text())["fingerprint"]
            except (OSError, ValueError, KeyError, TypeError):
                raise InputError(f"{manifest}: unreadable checkpoint manifest; rerun with "
                                 "--restart to discard the checkpoint") from None
            if old != self.fingerprint:
                raise InputError(f"the checkpoint in {self.folder} was made from other inputs "
                                 f"or options: {'; '.join(_differences(old, self.fingerprint))}"
                                 ". Rerun with --restart to discard it, or give the options "
                                 "it was made with")
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(manifest, ".json") as tmp:
                tmp.write_text(json.dumps({"fingerprint": self.fingerprint}, indent=1,
                                          sort_keys=True) + "\n")

    def recorded(self, key: str):
        """A decision recorded by :meth:`record` (None if there is none or it is unreadable,
        e.g. cut short by a crash: the run then decides again)."""
        try:
            return json.loads((self.folder / f"decision-{key}.json").read_text())
        except (OSError, ValueError):
            return None

    def record(self, key: str, value: dict) -> None:
        """Record a decision of the run that later chunks must share (e.g. the contrast
        check's) as ``decision-KEY.json``, atomically; a resumed run reads it with
        :meth:`recorded` instead of deciding again."""
        from radsvd._files import atomic_path

        with atomic_path(self.folder / f"decision-{key}.json", ".json") as tmp:
            tmp.write_text(json.dumps({k: _plain(v) for k, v in value.items()}, indent=1,
                                      sort_keys=True) + "\n")

    def _chunks(self) -> list:
        found = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.folder):
                m = _CHUNK_RE.match(entry.name)
                if m:
                    found.append((int(m.group(1)), int(m.group(2)), Path(entry.path)))
        return sorted(found)

    def load(self) -> list:
        """The finished chunks that continue each other from ``lo``, as parts of the run
        (dicts: start, stop, rows, skipped, results, extra).  A chunk file that cannot be
        read (e.g. cut short by a crash of the machine) ends the usable run: it and any later
        chunks are recomputed."""
        parts, at = [], self.lo
        for start, stop, path in self._chunks():
            if start != at or stop > self.hi:
                break
            try:
                with np.load(path, allow_pickle=False) as z:
                    rows = z["rows"]
                    results = {k: z[k] for k in RESULT_KEYS}
                    extra = {k[6:]: z[k] for k in z.files if k.startswith("extra_")}
                    skipped = [(int(r), str(name), str(why)) for r, name, why in
                               zip(z["skipped_rows"], z["skipped_names"], z["skipped_why"])]
                if any(len(v) != len(rows) for v in (*results.values(), *extra.values())):
                    raise ValueError("lengths differ")
            except (OSError, ValueError, KeyError, EOFError) as exc:
                warnings.warn(f"{path}: unreadable checkpoint chunk ({exc}); it is recomputed",
                              InputWarning, stacklevel=2)
                break
            parts.append(dict(start=start, stop=stop, rows=rows, skipped=skipped,
                              results=results, extra=extra))
            at = stop
        return parts

    def save(self, part: dict) -> None:
        """Write one finished chunk atomically; a full disk leaves no partial file behind."""
        from radsvd._files import save_npz

        path = self.folder / f"chunk-{part['start']:012d}-{part['stop']:012d}.npz"
        sk = part["skipped"]
        try:
            save_npz(path, rows=np.asarray(part["rows"], np.int64), **part["results"],
                     **{f"extra_{k}": v for k, v in part["extra"].items()},
                     skipped_rows=np.array([s[0] for s in sk], np.int64),
                     skipped_names=np.array([s[1] for s in sk], dtype=str),
                     skipped_why=np.array([s[2] for s in sk], dtype=str))
        except OSError as exc:
            raise OSError(exc.errno, f"cannot write the checkpoint chunk {path.name} in "
                          f"{self.folder} ({exc.strerror or exc}); the chunks before it are "
                          "kept: free some space and rerun the same command to resume") \
                from None

    def remove(self) -> None:
        """Delete the checkpoint's files and its folder."""
        from radsvd._files import TMP_TAG

        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.folder):
                if (_CHUNK_RE.match(entry.name) or _LIKELIHOOD_RE.match(entry.name)
                        or _DECISION_RE.match(entry.name) or entry.name == self.MANIFEST
                        or TMP_TAG in entry.name):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
            with contextlib.suppress(OSError):
                self.folder.rmdir()


def likelihood_chunk(folder, start: int, stop: int) -> Path:
    """The file of the log-likelihoods of the chunk of rows [start, stop) in ``folder`` (the
    checkpoint's, or a temporary one): maximum, integrated (m, n_templates), sigma (m,)."""
    return Path(folder) / f"likelihoods-{int(start):012d}-{int(stop):012d}.npz"


def _readable(path) -> bool:
    try:
        with np.load(path, allow_pickle=False) as z:
            return all(f"{k}.npy" in z.zip.namelist() for k in LIKELIHOOD_KEYS)
    except (OSError, ValueError, EOFError):
        return False


def likelihood_parts(folder, parts: list) -> list:
    """The leading ``parts`` (finished chunks) whose likelihood file is there and readable: a
    resumed run recomputes from the first chunk without one."""
    for i, p in enumerate(parts):
        if not _readable(likelihood_chunk(folder, p["start"], p["stop"])):
            return parts[:i]
    return parts


def write_likelihoods(path, folder, parts: list, **info) -> tuple:
    """Join the chunks' likelihood files into one .npz at ``path`` (atomically), one chunk in
    memory at a time: maximum, integrated (N_particles, N_templates), sigma, rows (the STAR
    rows, 0-based, as in the poses .npz) and ``info`` (written as info_KEY).  Returns the
    shape of the arrays."""
    import zipfile

    from radsvd._files import atomic_path

    files = [likelihood_chunk(folder, p["start"], p["stop"]) for p in parts]
    rows = np.concatenate([np.asarray(p["rows"], np.int64) for p in parts]) if parts \
        else np.zeros(0, np.int64)
    n_t = int(info.get("n_templates", 0))
    for f in files:
        with np.load(f, allow_pickle=False) as z:
            n_t = z["maximum"].shape[1]
            break
    shapes = dict(maximum=(len(rows), n_t), integrated=(len(rows), n_t), sigma=(len(rows),))
    with atomic_path(path, ".npz") as tmp, \
            zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key in LIKELIHOOD_KEYS:
            with zf.open(f"{key}.npy", "w", force_zip64=True) as out:
                np.lib.format.write_array_header_2_0(out, dict(
                    descr=np.lib.format.dtype_to_descr(np.dtype(np.float64)),
                    fortran_order=False, shape=shapes[key]))
                for f in files:
                    with np.load(f, allow_pickle=False) as z:
                        out.write(np.ascontiguousarray(z[key], np.float64).tobytes())
        for key, value in dict(rows=rows, **{f"info_{k}": v for k, v in info.items()}).items():
            with zf.open(f"{key}.npy", "w", force_zip64=True) as out:
                np.lib.format.write_array(out, np.asarray(value), allow_pickle=False)
    return shapes["maximum"]


def write_outputs(res, out, star) -> tuple[Path, Path]:
    """The run's two outputs: ``out`` (.star, the input rows aligned, with their poses) and
    the .npz beside it (:meth:`ParticlePoses.save_npz`).  Returns (star, npz)."""
    from radsvd.data.poses import write_poses_star

    out = Path(out)
    npz = out.with_suffix(".npz")
    res.save_npz(npz)
    write_poses_star(out, star, res.poses, res.score, rows=res.rows)
    return out, npz


_SHARD_INFO = ("shard_index", "shard_count", "row_start", "row_stop")


def merge_poses(shards, star=None):
    """Join the outputs of the N shard runs (their STAR paths; the .npz beside each is read)
    into the result of the unsharded run.  Refuses missing, repeated or overlapping shards
    and shards made from other inputs or options.  ``star``: the particle STAR (default: the
    one the shards name, checked against their fingerprint).  Returns (ParticlePoses, star)."""
    if not shards:
        raise InputError("merge-poses: give the shards' STAR files")
    loaded = []
    for s in shards:
        npz = Path(s).with_suffix(".npz")
        if not npz.is_file():
            raise InputError(f"{s}: no {npz.name} beside it (merge-poses reads the .npz that "
                             "align-particles writes beside each shard's STAR)")
        try:
            with np.load(npz, allow_pickle=False) as z:
                d = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError) as exc:
            raise InputError(f"{npz}: unreadable ({exc})") from None
        info = {k[5:]: d[k] for k in d if k.startswith("info_")}
        if "shard_count" not in info or "fingerprint" not in info:
            raise InputError(f"{s}: not a shard of align-particles --shard I/N")
        loaded.append((Path(s), d, info))
    counts = {int(i["shard_count"]) for _, _, i in loaded}
    if len(counts) > 1:
        raise InputError(f"merge-poses: the shards are of different splits (N = "
                         f"{', '.join(map(str, sorted(counts)))})")
    N = counts.pop()
    ref = json.loads(str(loaded[0][2]["fingerprint"]))
    seen = {}
    for path, _, info in loaded:
        fp = json.loads(str(info["fingerprint"]))
        if fp != ref:
            raise InputError(f"merge-poses: {path} was made from other inputs or options than "
                             f"{loaded[0][0]}: {'; '.join(_differences(ref, fp))}")
        for key in ("invert",):
            if key in info and key in loaded[0][2] and \
                    bool(info[key]) != bool(loaded[0][2][key]):
                raise InputError(f"merge-poses: {path} and {loaded[0][0]} chose a different "
                                 "contrast (--invert auto); rerun them with --invert or "
                                 "--no-invert")
        i = int(info["shard_index"])
        if i in seen:
            raise InputError(f"merge-poses: shard {i}/{N} given twice ({seen[i]} and {path}): "
                             "overlapping shards")
        seen[i] = path
    missing = [i for i in range(1, N + 1) if i not in seen]
    if missing:
        raise InputError(f"merge-poses: missing shard(s) "
                         f"{', '.join(f'{i}/{N}' for i in missing)} of {N}")
    loaded.sort(key=lambda t: int(t[2]["shard_index"]))
    n_sel = int(loaded[0][2]["n_selected"])
    at = 0
    for path, _, info in loaded:
        lo, hi = int(info["row_start"]), int(info["row_stop"])
        if int(info["n_selected"]) != n_sel or lo != at:
            raise InputError(f"merge-poses: {path} covers rows {lo + 1}..{hi}, expected from "
                             f"row {at + 1}: overlapping or mismatched shards")
        at = hi
    if at != n_sel:
        raise InputError(f"merge-poses: the shards cover {at} of {n_sel} rows")
    star = Path(str(loaded[0][2]["particles"]) if star is None else star)
    if not star.is_file():
        raise InputError(f"merge-poses: the particle STAR {star} the shards were made from is "
                         "not there; give it with --particles")
    if _sha256(star) != ref.get("particles STAR"):
        raise InputError(f"merge-poses: {star} is not the STAR file the shards were made from "
                         "(its contents changed)")
    cat = {k: np.concatenate([d[k] for _, d, _ in loaded])
           for k in (*RESULT_KEYS, "rows", "rot", "tilt", "psi", "origin_x_A", "origin_y_A",
                     "skipped_rows", "skipped_reasons")}
    extra_keys = [k for k in loaded[0][1] if k.startswith("extra_")]
    extra = {k[6:]: np.concatenate([d[k] for _, d, _ in loaded]) for k in extra_keys}
    info = {k: (v.item() if v.ndim == 0 else v) for k, v in loaded[0][2].items()
            if k not in _SHARD_INFO}
    info.update(row_start=0, row_stop=n_sel)
    poses = pd.DataFrame({"rot": cat["rot"], "tilt": cat["tilt"], "psi": cat["psi"],
                          "shift_x": cat["origin_x_A"], "shift_y": cat["origin_y_A"]})
    skipped = [(int(r), *str(why).split(": ", 1))
               for r, why in zip(cat["skipped_rows"], cat["skipped_reasons"])]
    res = ParticlePoses(poses, cat["score"], cat["best_target"], cat["angle"], cat["shift"],
                        cat["ctf_group"], loaded[0][1]["template_rotations"], info,
                        cat["rows"], skipped, extra)
    return res, star
