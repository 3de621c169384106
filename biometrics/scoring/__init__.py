"""Scoring: numbers in, decisions out. No database, model or server here."""

from biometrics.scoring.decision import Decision, decide, score_from_similarity

__all__ = ["Decision", "decide", "score_from_similarity"]
