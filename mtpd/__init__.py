"""mtpd: Multi-Teacher Progressive Distillation."""
__version__ = "0.1.0"
