"""Hand-written fakes used by the tests: real local servers at the HTTP edge, not patched clients."""
