"""The workbench: adapt a pretrained language model to a low-resource language, scoring every stage."""

__version__ = "0.1.0"
