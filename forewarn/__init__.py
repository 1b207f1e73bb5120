"""Forewarn: predict which virtual machines will fail and act before they do."""

__version__ = "0.1.0"
