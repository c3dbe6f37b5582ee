"""Images in the engine: loading and preprocessing them, expanding their placeholders, tiny test models."""
