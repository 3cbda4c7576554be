"""Train the BPE tokenizer on the training documents only."""
from act24.io import log_to

with log_to(snakemake.log[0]):  # the imports too: an import error also ends the job's log
    from act24.data import read_documents, train_tokenizer

    docs = read_documents(snakemake.input[0])["train"]
    tok = train_tokenizer([d.text for d in docs], snakemake.params.vocab_size)
    tok.save(snakemake.output[0])
    print(f"vocabulary: {tok.get_vocab_size()} tokens")
