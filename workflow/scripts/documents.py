"""Read the corpus and split it into train / validation by whole documents."""
from act24.io import log_to

with log_to(snakemake.log[0]):  # the imports too: an import error also ends the job's log
    from act24.data import load_documents, split_documents, write_documents

    data = snakemake.params.data
    docs = load_documents(data, sdist=snakemake.input[0] if snakemake.input else None)
    train, val = split_documents(docs, data["val_fraction"], data["split_seed"])
    write_documents(snakemake.output[0], train, val)
    print(f"{len(train)} train documents, {len(val)} validation documents: {[d.name for d in val]}")
