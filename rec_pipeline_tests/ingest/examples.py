"""One well-formed review line per release, the shape each test varies (``{**REVIEW_2018, "vote": "1,234"}``)."""

from __future__ import annotations

from typing import Any

REVIEW_2014: dict[str, Any] = {
    "reviewerID": "A2",
    "asin": "B2",
    "reviewerName": "y",
    "helpful": [3, 4],
    "reviewText": "fine",
    "overall": 4.0,
    "summary": "ok",
    "unixReviewTime": 1300000000,
    "reviewTime": "03 13, 2011",
}
REVIEW_2018: dict[str, Any] = {
    "overall": 5.0,
    "verified": True,
    "reviewTime": "08 22, 2013",
    "reviewerID": "A1",
    "asin": "B1",
    "reviewText": "good",
    "summary": "Five",
    "unixReviewTime": 1377129600,
    "vote": "2",
}
REVIEW_2023: dict[str, Any] = {
    "rating": 3.0,
    "title": "meh",
    "text": "so so",
    "asin": "B3V",
    "parent_asin": "B3",
    "user_id": "U3",
    "timestamp": 1588687728923,
    "helpful_vote": 2,
    "verified_purchase": True,
}
IMAGES_2023 = [{"small_image_url": "s", "large_image_url": "L"}]
