"""Sample files for a first upload, and the script that makes them."""
