"""Skills: small programs with a manifest, run sandboxed (WASM so far)."""
