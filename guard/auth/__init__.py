"""Who is calling Guard (API keys, tenants, roles) and who is on the phone (verification)."""
