"""Differential fuzzing of the two parser backends (httptools and h11) and of the core on top of them.

See docs/fuzzing.md for what is generated, what is compared and how to run a long campaign.
"""
