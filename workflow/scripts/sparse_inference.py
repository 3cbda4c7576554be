"""Validation loss of one trained model with dense and with 2:4-sparse FFN activations."""
from act24.io import log_to

with log_to(snakemake.log[0]):  # the imports too: an import error also ends the job's log
    from act24.evaluate import sparse_inference
    from act24.io import write_json

    result = sparse_inference(snakemake.input.checkpoint, snakemake.input.val, snakemake.params.n_batches)
    print(result)
    write_json(snakemake.output[0], result)
