"""How fast: ``ratelimit`` (one shared, adaptive token bucket), ``concurrency`` (the adaptive limit on requests in
flight), ``retry`` (the pure per-image retry decision). Pure math with the clock passed in, thin async wrappers.
"""
