"""The test suite (a package, so that every file imports tests.helpers the same way)."""
