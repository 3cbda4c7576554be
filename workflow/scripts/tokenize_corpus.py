"""Encode both splits to token arrays and summarize them."""
from act24.io import log_to

with log_to(snakemake.log[0]):  # the imports too: an import error also ends the job's log
    from act24.data import encode_documents, load_tokenizer, read_documents, save_tokens
    from act24.io import write_json

    splits = read_documents(snakemake.input.documents)
    tok = load_tokenizer(snakemake.input.tokenizer)
    summary = {"vocab_size": tok.get_vocab_size()}
    for split in ("train", "val"):
        ids = encode_documents(tok, splits[split])
        save_tokens(snakemake.output[split], ids)
        summary[split] = {"documents": [d.name for d in splits[split]], "tokens": int(len(ids)),
                          "characters": sum(len(d.text) for d in splits[split])}
    write_json(snakemake.output.summary, summary)
    print(summary["train"]["tokens"], "train tokens,", summary["val"]["tokens"], "validation tokens")
