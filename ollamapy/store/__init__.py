"""The model store: names, digests, manifests, blobs, create, garbage collection."""
