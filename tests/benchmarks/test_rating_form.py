"""The load process's form reader: what a browser would submit from the rating page."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from benchmarks.rating_form import build_submission, page_forms

PAGE = """<!doctype html><html><head><script>var x = '<input name="fake" type="radio">';</script>
<style>input[name="x"] { color: red }</style></head><body>
<form method="get" action="/search"><input name="q"></form>
<!-- <input type="hidden" name="commented" value="1"> -->
<form method="POST" action='/rate' novalidate>
  <input type=hidden name="form_token" value="a&amp;b&quot;c">
  <span class="choice"><input type="radio" name="s_7_3" id="s_7_3-1" value="1" required>
  <label>1</label></span>
  <input type="radio" name="s_7_3" value="2" checked>
  <input type="radio" name="s_7_3" value="cant-judge">
  <input type="radio" name="nps_7" value="10"><input type="radio" name="nps_7" value="">
  <textarea name="comment_7" rows="3">old &lt;text&gt;</textarea>
  <select name="lang"><option value="en">English</option>
  <option value="ru">Русский</option></select>
  <button type="submit">Send</button><input type="submit" name="go" value="Go">
</form></body></html>"""


def test_reads_fields_like_a_browser() -> None:
    forms = page_forms(PAGE)
    assert [(f.method, f.action) for f in forms] == [("get", "/search"), ("post", "/rate")]
    form = forms[1]
    # Entities are decoded, comments and scripts ignored, buttons are not fields.
    assert form.hidden == [("form_token", 'a&b"c')]
    assert form.choices == {
        "s_7_3": ["1", "2", "cant-judge"],
        "nps_7": ["10", ""],
        "lang": ["en", "ru"],
    }
    assert form.free == ["comment_7"]


def test_builds_the_post_from_the_page() -> None:
    answers = {7: {"scores": {3: None}, "nps": None, "comment": "Good & fast"}}
    post = build_submission(PAGE, answers, page_url="http://app/rate")
    assert post["url"] == "http://app/rate"
    assert parse_qsl(post["body"], keep_blank_values=True) == [
        ("form_token", 'a&b"c'),
        ("s_7_3", "cant-judge"),
        ("nps_7", ""),
        ("comment_7", "Good & fast"),
    ]
    with pytest.raises(ValueError, match="suppliers"):
        build_submission(PAGE, {**answers, 8: answers[7]}, page_url="http://app/rate")
