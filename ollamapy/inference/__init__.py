"""The inference engine: a request in ollamapy's own terms in, a typed stream of events out.

Every API family (native, OpenAI, OpenAI Responses, Anthropic) translates its wire request into
an `InferenceRequest`, runs it here, and encodes the `Event`s in its own wire format. Nothing in
this package knows about aiohttp or any wire format.
"""
