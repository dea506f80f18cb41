"""Offline training helpers shared by the apps (PyTorch: the optional ``train`` extra).

``apps.training.torch_snn`` mirrors the clockless engine's layers, neurons and gates at time bins, with surrogate
gradients, and exports network files the runtime loads. Importing this package does not import torch.
"""
