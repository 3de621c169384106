import pytest

from biometrics.scoring import Decision, decide, score_from_similarity


@pytest.mark.parametrize(
    ("similarity", "score"), [(-0.4, 0.0), (0.0, 0.0), (0.256, 25.6), (1.0, 100.0), (1.2, 100.0)]
)
def test_score_is_similarity_on_a_0_to_100_scale(similarity, score):
    assert score_from_similarity(similarity) == pytest.approx(score)


def test_the_threshold_itself_accepts():
    assert decide(30.0, 30.0) is Decision.ACCEPT
    assert decide(29.99, 30.0) is Decision.REJECT
