"""Record the software versions and the device this pipeline ran on."""
from act24.io import environment_info, log_to, write_json

with log_to(snakemake.log[0]):
    info = environment_info()
    write_json(snakemake.output[0], info)
    print(info)
