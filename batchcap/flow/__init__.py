"""How fast: ``admit`` (every gate an attempt passes, and what its outcome teaches them), ``ratelimit`` (one
shared, adaptive token bucket), ``concurrency`` (the adaptive limit on requests in flight), ``retry`` (the pure
per-image retry decision), ``circuit`` (an outage or a spent quota: one probe at a time), ``window`` (the
server's quota headers, fixed windows learned from 429s), ``suspend`` (did the machine sleep?). Pure math with
the clock passed in, thin async wrappers.
"""
