"""Fig 2: two useful image rings; the principal vector u maximises C(u), v minimises it."""

from two_rings_plot import plot_two_rings
from wf_common import setup

log = setup(snakemake)
plot_two_rings(snakemake.input[0], snakemake.params.pair, snakemake.output[0],
               snakemake.params.style,
               "Two informative rings and their principal combinations")
log.info("wrote %s", snakemake.output[0])
