"""Engine implementations of ``engine.backend.Backend``; each composes the concern modules."""
