"""Simulated model endpoints: the in-process mock model and an OpenAI-compatible mock provider (HTTP).

They stand in for real providers in the demo, in dry runs and in users' tests. They are self-contained
(the standard library only), speak to the request layer over HTTP or as a model callable, and nothing
below them in the package imports them.
"""
