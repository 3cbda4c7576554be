"""FFN weight gradients of each 2:4 recipe against the exact gradient, on a trained Squared-ReLU model."""
from act24.io import log_to

with log_to(snakemake.log[0]):  # the imports too: an import error also ends the job's log
    import pandas as pd

    from act24.config import RunConfig
    from act24.evaluate import gradient_fidelity
    from act24.report import tables

    recipes = {v: RunConfig.from_dict({"sparse": s}).sparse.recipe for v, s in snakemake.params.recipes.items()}
    rows = pd.DataFrame(gradient_fidelity(snakemake.input.checkpoint, snakemake.input.val, recipes,
                                          snakemake.params.n_batches))
    df = tables.gradient_fidelity_table(rows, snakemake.params.labels)
    rows.to_csv(snakemake.output.csv, index=False)
    tables.write_table(df, snakemake.output.md, snakemake.output.html)
    print(df.to_string())
