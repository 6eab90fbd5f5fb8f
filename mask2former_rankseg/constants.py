"""Constants shared across the package (named once)."""

IGNORE_LABEL = 255
"""Label value of pixels that carry no supervision and are skipped by evaluation."""

IGNORE_LABEL_16BIT = 65535
"""The ignore label of label maps stored in 16 bits (more than 255 categories, as ADE20K-Full)."""

SUPPRESSED_LOGIT = -100.0
"""Logit given to categories outside the RankSeg top-k (or absent, for the oracle)."""
