"""Wire formats: pydantic models for every request and response, one module per API family."""
