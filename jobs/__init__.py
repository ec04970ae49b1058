"""Thin entry points: each parses arguments and conf, calls the engine, prints the summary."""
