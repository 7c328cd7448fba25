"""The tamper-evident decision log and the auditor API."""
