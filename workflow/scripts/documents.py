"""Read the corpus and split it into train / validation by whole documents."""
from act24.io import log_to

with log_to(snakemake.log[0]):  # the imports too: an import error also ends the job's log
    import csv

    from act24.data import load_documents, split_documents, write_documents

    data = snakemake.params.data
    if data["source"] == "packages":
        from act24.corpus import read_packages, sources

        srcs = sources(data)
        docs, rows = read_packages(dict(zip([s.file for s in srcs], snakemake.input)), srcs)
        with open(snakemake.output.sources, "w", newline="") as f:  # provenance and licence of every source
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        docs = load_documents(data, sdist=snakemake.input[0] if snakemake.input else None)
    train, val = split_documents(docs, data["val_fraction"], data["split_seed"])
    write_documents(snakemake.output.documents, train, val)
    print(f"{len(train)} train documents, {len(val)} validation documents")
