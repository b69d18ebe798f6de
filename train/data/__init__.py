"""Data: the SIPaKMeD / ImageFolder reader, the synthetic generator, transforms and datasets."""
