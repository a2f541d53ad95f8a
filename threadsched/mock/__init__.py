"""Simulated model endpoints: the in-process mock model and an OpenAI-compatible mock provider (HTTP).

They stand in for real providers in the demo, in dry runs and in users' tests. They use the request
layer's contracts; the request layer never imports them.
"""
