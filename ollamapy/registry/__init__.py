"""Pull and push over the Ollama registry protocol (also spoken by Hugging Face, `hf.co/...`).

Layout: `names` (model name -> registry URLs), `auth` (ed25519 key, challenge parsing, signed
token requests), `transport` (one registry session: auth retries, redirect policy), `download`
(ranged, parallel, resumable blob downloads shared between pulls), `upload` (the chunked push
flow), `service` (pull/push orchestration with Ollama's progress sequence). Manifests are parsed by
`store.manifest` (the one parser, shared with the store); every digest from a manifest passes
`store.digest.validate_digest` before it is used for anything, and nothing is written outside the
model store.
"""
