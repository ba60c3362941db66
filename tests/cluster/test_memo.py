"""cluster/api/memo.py: the accepted beat's answer encoded once per interval, bounded."""

from __future__ import annotations

import json

from cluster.api.memo import BeatAnswers
from distro.requests import CODE_OK, CODE_RESOURCE_NOT_FOUND, Result


def test_an_accepted_beat_is_answered_with_one_shared_response_per_interval() -> None:
    answers = BeatAnswers()

    def ok(interval: int) -> Result:
        return Result(200, {"clientBeatInterval": interval, "code": CODE_OK, "lightBeatEnabled": True})

    first = answers.response(ok(5000))
    assert first is answers.response(ok(5000))
    assert json.loads(first.body) == {"clientBeatInterval": 5000, "code": CODE_OK, "lightBeatEnabled": True}
    assert first.status == 200
    other = answers.response(ok(2000))
    assert other is not first and json.loads(other.body)["clientBeatInterval"] == 2000


def test_other_answers_are_encoded_each_time() -> None:
    answers = BeatAnswers()
    missing = Result(200, {"clientBeatInterval": 5000, "code": CODE_RESOURCE_NOT_FOUND})
    a, b = answers.response(missing), answers.response(missing)
    assert a is not b and json.loads(a.body)["code"] == CODE_RESOURCE_NOT_FOUND
    text = answers.response(Result(400, "instance not found"))
    assert text.status == 400 and text.body == b"instance not found"
    assert text.content_type.startswith("text/plain")


def test_the_answers_are_bounded() -> None:
    answers = BeatAnswers()
    for interval in range(1000, 1000 + 3 * BeatAnswers.MAX_ENTRIES):
        answers.response(Result(200, {"clientBeatInterval": interval, "code": CODE_OK, "lightBeatEnabled": True}))
        assert len(answers._answers) <= BeatAnswers.MAX_ENTRIES
