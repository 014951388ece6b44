"""Converters between apqopt and other tools' formats."""
