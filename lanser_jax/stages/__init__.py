"""The offline stages (manifest, ASR, weak labels, features): one module per stage, chain.py lists them,
stage.py is their protocol, pieces.py the piece/process/done-marker machinery, main.py the command line."""
