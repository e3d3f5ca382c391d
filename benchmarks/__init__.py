"""``make bench``: the authenticated cached product read against bare Ray Serve, with wrk."""
