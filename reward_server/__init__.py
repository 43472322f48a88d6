"""Reward service of IRPO: scores restorations over REST (see reward_server.app)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("irpo")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
