"""The scheduler core: contracts, the fair queue, admission, the dispatcher, launch, records, deadlines,
outcomes, events, futures, and the two front doors built on them (``Scheduler`` and ``LeasedExecutor``).

Everything else in threadsched (request admission, policies, the mock provider, the engine, the report,
backends and the CLI) is built on this package and imports it; nothing here imports them.
"""
