"""Deskstream's local infrastructure without Docker: the ``stack`` package (Kafka, FerretDB and the
services; command line ``stackctl.py``) and ``testtools.py`` (what the test suite needs besides)."""
