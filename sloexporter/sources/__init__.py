"""Sources: one module per watched kind, plus the shared informer machinery."""
