"""The shipped hardware tables, installed with apqopt as the data package ``apqopt.tables``.

BitFusion tables (``bitfusion_SPACE.csv``, built by ``apqopt lut build``) and the host-CPU tables
measured here (``host_PRECISION_SPACE.csv`` with their ``.check.json``, by ``apqopt lut measure``).
"""
