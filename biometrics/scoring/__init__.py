"""Scoring: numbers in, decisions out. No database, model or server here."""

from biometrics.scoring.decision import Ruling, TrialFacts, decide, rule, score_from_similarity

__all__ = ["Ruling", "TrialFacts", "decide", "rule", "score_from_similarity"]
