"""The audio front end: decoding, resampling and validation of one clip; log-mel spectrograms."""
