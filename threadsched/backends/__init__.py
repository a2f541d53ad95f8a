"""Executors that run scheduler tasks somewhere other than local threads.

* ``threadsched.backends.dask``: a Dask ``distributed`` cluster (the optional ``[dask]`` extra).

Importing this package (or a backend module) imports no optional dependency; a backend imports its
library only when it is used, and says which extra to install when it is missing.
"""
