"""The review workbench: video-patrol staff judge flagged cases (docs/review.md)."""
