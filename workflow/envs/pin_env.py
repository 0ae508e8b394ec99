"""Write workflow/envs/radsvd.yaml: Python and radsvd[workflow]'s whole dependency closure,
each package pinned to the version installed in the running environment.

    pip install -e ".[workflow]" && python workflow/envs/pin_env.py > workflow/envs/radsvd.yaml
"""

from __future__ import annotations

import datetime
import importlib.metadata as md
import re
import sys

from packaging.markers import default_environment
from packaging.requirements import Requirement

HEADER = """\
# Software environment of every rule (`snakemake --sw-deployment-method conda`): Python {py}
# and radsvd with its workflow extras, every Python package pinned to the version installed
# when it was written ({date}), transitive dependencies included, so that a run reproduces
# the reference figures (figures/) bit for bit.  Written by workflow/envs/pin_env.py.
channels:
  - conda-forge
  - nodefaults
dependencies:
  - python ={py}
  - pip
  - pip:
      - "-e ../..[workflow]"
"""


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(name: str = "radsvd", extras: tuple[str, ...] = ("workflow",)) -> dict:
    """{normalised name: (name, version)} of the installed dependency closure of name[extras]."""
    env = default_environment()
    found: dict = {}

    def walk(dist_name, dist_extras):
        dist = md.distribution(dist_name)
        found.setdefault(_key(dist_name), (dist.metadata["Name"], dist.version))
        for text in dist.requires or []:
            req = Requirement(text)
            wanted = req.marker is None or any(
                req.marker.evaluate({**env, "extra": e}) for e in ("", *dist_extras))
            if wanted and (_key(req.name) not in found or req.extras):
                walk(req.name, tuple(req.extras))

    walk(name, extras)
    found.pop(_key(name))
    return found


def main() -> None:
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    sys.stdout.write(HEADER.format(py=py, date=datetime.date.today().isoformat()))
    for _, (name, version) in sorted(closure().items()):
        sys.stdout.write(f'      - "{name}=={version}"\n')


if __name__ == "__main__":
    main()
