"""Tests of mtpd/data/: tests/data/test_<module>.py for mtpd/data/<module>.py."""
