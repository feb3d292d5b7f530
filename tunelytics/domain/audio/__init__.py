"""Audio analysis: decoding, the torch feature frontend, loudness, quality, fingerprints."""
