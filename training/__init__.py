"""Offline tools: synthetic data, training, export, evaluation."""
