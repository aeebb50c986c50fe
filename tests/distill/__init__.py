"""Tests of mtpd/distill/: tests/distill/test_<module>.py for mtpd/distill/<module>.py."""
