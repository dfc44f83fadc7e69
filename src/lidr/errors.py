"""The config's error, below every module that raises it.

config.py validates the run config with it, and text/templates.py (which config.py
imports) refuses a bad template with it, so it lives under both; `lidr.config.ConfigError`
is the same class.
"""


class ConfigError(ValueError):
    """A config problem, with a one-line message naming the key."""
