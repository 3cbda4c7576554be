"""Pack what an offline machine needs to rebuild the token arrays: the split documents (xz) and the tokenizer, with
the sha256 of the token arrays they must give."""
from act24.io import log_to

with log_to(snakemake.log[0]):  # the imports too: an import error also ends the job's log
    from act24.offline import write_bundle

    manifest = write_bundle(snakemake.input.documents, snakemake.input.tokenizer, snakemake.input.train,
                            snakemake.input.val, snakemake.output.documents, snakemake.output.tokenizer, snakemake.output.manifest)
    print(manifest)
