"""Pure decoders: bytes in, values out. No directory walking, no printing."""
