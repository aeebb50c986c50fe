"""`python -m mtpd ...` is `mtpd ...`: rules call it through the interpreter that runs Snakemake."""
import sys

from mtpd.cli import main

sys.exit(main())
