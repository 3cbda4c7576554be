"""Record the software versions and the device this pipeline ran on."""
from act24.io import log_to

with log_to(snakemake.log[0]):  # the imports too: an import error also ends the job's log
    from act24.io import environment_info, write_json

    info = environment_info()
    write_json(snakemake.output[0], info)
    print(info)
