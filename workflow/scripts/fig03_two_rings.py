"""Fig 3: a large but uninformative ring and a small informative one (same format as Fig 2)."""

from two_rings_plot import plot_two_rings
from wf_common import setup

log = setup(snakemake)
plot_two_rings(snakemake.input[0], snakemake.params.pair, snakemake.output[0],
               snakemake.params.style,
               "A large, rotation-insensitive ring and a small informative ring")
log.info("wrote %s", snakemake.output[0])
