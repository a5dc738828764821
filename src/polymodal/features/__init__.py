"""Feature cache: outputs of frozen encoders computed once, stored on disk and reused (`polymodal.features.cache`)."""
