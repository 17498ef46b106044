"""Thin handlers per API family. Each module exposes `setup(app)` registering its routes."""
