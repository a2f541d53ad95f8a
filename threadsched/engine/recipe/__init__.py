"""Recipes: the typed, validated description of one dataset run, parsed from TOML."""
