"""PCI: card validation, the card vault (tokenize, keys, rotation), redaction of card data."""
