"""Fetch a real dataset through the manifest (radsvd.data.fetch.fetch_dataset): the EMDB map
and the STAR file plus only the first n particles of the stacks (HTTP Range), all checked
against the manifest's sizes / sha256 / header fields.  Writes ``<dest>/fetched.json``."""

from radsvd.data.fetch import fetch_dataset
from wf_common import setup

log = setup(snakemake)
cfg = snakemake.params.cfg
real = cfg["real"]
record = fetch_dataset(real["dataset"], snakemake.params.dest,
                       n_particles=int(cfg["images"]["n_images"]),
                       base_url=real.get("base_url"), star_url=real.get("star_url"),
                       log=log.info)
log.info("fetched %s: %s", record["dataset"], ", ".join(record["files"]))
