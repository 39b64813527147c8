"""Point-in-time selectors (being split into modules; see the next commit)."""
from timeseries.pit._sql import *  # noqa: F401,F403
