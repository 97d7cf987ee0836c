"""corpus-scanner: distributed statistical audit of web-scale text corpora."""
