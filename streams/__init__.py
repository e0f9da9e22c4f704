"""Feed formats, adapters (raw feed line -> canonical update) and the synthetic feed generator."""
