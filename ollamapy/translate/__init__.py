"""Pure translators between agent wire APIs and the engine's terms: a wire request becomes an
`InferenceRequest`; the engine's `Event` stream becomes the API's own event sequence or answer
object. No aiohttp and no I/O here (server/routes/ holds the thin async shells), so every
sequence is unit-tested with synthetic event streams."""
