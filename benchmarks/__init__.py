"""``make bench``: the cached product read against bare Ray Serve, measured with wrk."""
