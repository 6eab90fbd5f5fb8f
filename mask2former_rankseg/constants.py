"""Constants shared across the package (named once)."""

IGNORE_LABEL = 255
"""Label value of pixels that carry no supervision and are skipped by evaluation."""

SUPPRESSED_LOGIT = -100.0
"""Logit given to categories outside the RankSeg top-k (or absent, for the oracle)."""
