"""Running autoseg beyond one process: job graphs submitted to SLURM or a local process pool, sharded prediction."""
