"""SIEM forwarding of the audit trail (PCI DSS 10.3.3): syslog or HTTPS, resumable, at-least-once."""
