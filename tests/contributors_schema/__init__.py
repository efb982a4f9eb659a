"""Tests of the record schema, its validation and normalisation, and the identifier screen."""
