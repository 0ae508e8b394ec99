"""Concatenate the per-dataset tidy tables into one, checking their columns."""

import pandas as pd

from wf_common import read_table, setup, write_table

log = setup(snakemake)
table = snakemake.params.table
frames = [read_table(path, table) for path in snakemake.input]
df = pd.concat(frames, ignore_index=True)
write_table(snakemake.output[0], df.to_dict("records"), table)
log.info("%s: %d rows from %d tables -> %s", table, len(df), len(frames), snakemake.output[0])
