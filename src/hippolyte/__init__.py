"""Hippolyte: recurring, paced, lossless backups for fleets of DynamoDB tables."""

__version__ = "0.1.0"
