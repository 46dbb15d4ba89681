"""Training needs the ``[train]`` extra (PyTorch); serving never imports this package."""
