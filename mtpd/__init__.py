"""mtpd: Multi-Teacher Progressive Distillation (Cao et al., ICML 2023) as one Snakemake DAG.

`import mtpd` is cheap (no torch); `mtpd.register_all_modules()` registers the distiller,
losses and hooks with MMEngine before building models from configs.
"""
from mtpd.registry import register_all_modules

__version__ = "0.2.0"
__all__ = ["register_all_modules", "__version__"]
