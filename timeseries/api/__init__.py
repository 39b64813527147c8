"""The read API (DRF): dataset listings, point-in-time endpoints and the as-of join, thin over timeseries/pit/."""
