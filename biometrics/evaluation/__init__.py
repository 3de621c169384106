"""Measuring accuracy: verification trials built from a folder of speech, and the
metrics the field reports (EER, minDCF, FRR at a fixed FAR)."""
