"""Governance and security of the master: accredited users, audited search, shielding,
retention and accredited sources (issue 7; see docs/governance.md).

Every act (`acts.perform`) runs on a DuckDB connection to the master, whether the CLI opened the
file itself or the running engine serves the request over its Unix socket (`service`).
"""
