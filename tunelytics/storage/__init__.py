"""MongoDB repositories. Every method takes the tenant explicitly: no path can forget it."""

from tunelytics.storage.database import Storage, connect

__all__ = ["Storage", "connect"]
