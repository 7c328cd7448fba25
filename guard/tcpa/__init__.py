"""Outbound-call decisions: calling hours, DNC registries, consent, frequency caps, scrub."""
