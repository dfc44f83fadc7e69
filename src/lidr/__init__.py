"""lidr: Language Imbalance Driven Rewarding for multilingual self-improvement."""
__version__ = "0.1.0"
