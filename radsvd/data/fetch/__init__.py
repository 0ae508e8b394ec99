"""Manifest-driven downloads of the paper's datasets (EMDB maps, EMPIAR particles).

- :mod:`.transport`: HTTP with per-read and total deadlines, retries, Range resumption,
  private locked partial files; nothing is renamed into place before it is verified.
- :mod:`.validate`: what an MRC map/stack or a STAR file must look like to be kept.
- :mod:`.manifest`: the packaged ``data_manifest.yaml`` and its checks.
- :mod:`.dataset`: one dataset end to end (map, STAR, the first images of each stack), the
  hash ledger of first good downloads, the record ``fetched.json`` and :func:`load_fetched`.
"""

from .dataset import (
                      FETCH_RECORD,
                      LEDGER,
                      fetch_dataset,
                      fetch_stack_head,
                      find_star_files,
                      list_directory,
                      load_fetched,
)
from .manifest import (
                      PACKAGED,
                      expand,
                      load_manifest,
                      manifest_path,
                      mirrors,
                      resolve_dataset,
)
from .transport import (
                      ChecksumError,
                      DeadlineError,
                      FetchError,
                      Limits,
                      NotFoundError,
                      check_url,
                      fetch_bytes,
                      fetch_file,
                      sha256_file,
)
from .validate import check_mrc_file, check_star_file, parse_mrc_header

__all__ = [
    "FETCH_RECORD", "LEDGER", "PACKAGED", "ChecksumError", "DeadlineError", "FetchError",
    "Limits", "NotFoundError", "check_mrc_file", "check_star_file", "check_url", "expand",
    "fetch_bytes", "fetch_dataset", "fetch_file", "fetch_stack_head", "find_star_files",
    "list_directory", "load_fetched", "load_manifest", "manifest_path", "mirrors",
    "parse_mrc_header", "resolve_dataset", "sha256_file",
]
