"""Tests of the partner toolkit: HTCDS mapping, pseudonyms, the client and the CLI."""
