"""Shared machinery of the project: scripts import from here so each mechanic is written once.

- script_utils: --NAME=VALUE / --quick / --help, seeding, device, outputs/ and metrics.json
- data_utils:   dataset loading and caching, tokenizer and vocabulary, batching
- model_utils:  LSTM/GRU builders (torch.nn or 01_basic_theory's scratch cells), training loop
- visualization: training curves, confusion matrices, predictions, heatmaps (PNG, headless)
"""
