"""Data-quality curation (being split into modules; see the next commit)."""
from timeseries.quality.checks import *  # noqa: F401,F403
