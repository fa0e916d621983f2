"""The offline demo's own emotional speech, synthesised with eSpeak NG (see corpus.py, PROSODY.md)."""
