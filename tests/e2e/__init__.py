"""End-to-end runs: Snakemake runs jobs (locally, or through a real SLURM), and the tests
check what they left, each file named after what it checks."""
