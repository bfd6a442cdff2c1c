"""Who answers: ``client`` (the one aiohttp session, the one place aiohttp errors are translated), ``protocols``
(one adapter per service shape, and the status -> error class map), ``targets`` (``NAME=SPEC``), ``endpoints``
(an Inference Endpoint's lifecycle through the management API). Only this package and ``emulator`` import aiohttp.
"""
