"""The read-only auditor console: server-rendered HTML pages at /console."""
