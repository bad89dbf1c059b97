"""Learners: sign-up, consent, and the learner's own data (export and erasure)."""
