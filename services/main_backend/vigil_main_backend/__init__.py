"""vigil main backend: the client-facing gateway that fans requests out to the model backends."""
