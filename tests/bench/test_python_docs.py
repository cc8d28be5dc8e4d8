"""The labelled questions over the Python manual: well formed, spread out, and refused when not."""

import json

import pytest

from bench import python_docs


@pytest.fixture
def html_root(tmp_path):
    for page in ("library/a.html", "library/b.html", "faq/c.html"):
        (tmp_path / page).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / page).write_text("<html><title>x</title></html>")
    return tmp_path


def write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_questions_load_with_their_pages(tmp_path, html_root):
    path = write(tmp_path / "q.jsonl", [{"question": "how?", "pages": ["library/a.html", "faq/c.html"]}])
    assert python_docs.load_questions(path, html_root) == [
        python_docs.Labelled("how?", ("library/a.html", "faq/c.html"))
    ]


def test_a_missing_page_is_named(tmp_path, html_root):
    path = write(tmp_path / "q.jsonl", [{"question": "how?", "pages": ["library/nope.html"]}])
    with pytest.raises(SystemExit, match="library/nope.html"):
        python_docs.load_questions(path, html_root)


def test_a_page_answering_too_many_questions_is_refused(tmp_path, html_root):
    rows = [{"question": f"q{i}", "pages": ["library/a.html"]} for i in range(3)]
    with pytest.raises(SystemExit, match="more than 2 questions on library/a.html"):
        python_docs.load_questions(write(tmp_path / "q.jsonl", rows), html_root)


def test_generated_indexes_are_not_pages(html_root):
    (html_root / "genindex-A.html").write_text("<html></html>")
    (html_root / "_static").mkdir()
    (html_root / "_static" / "x.html").write_text("<html></html>")
    assert [source for source, _ in python_docs.manual_pages(html_root)] == [
        "faq/c.html",
        "library/a.html",
        "library/b.html",
    ]


def test_checked_in_questions_are_many_and_spread(tmp_path):
    """The set in bench/data: at least 70 questions over at least 50 pages, each page real when
    the manual is installed."""
    rows = [json.loads(line) for line in python_docs.QUESTIONS.read_text().splitlines() if line.strip()]
    pages = {page for row in rows for page in row["pages"]}
    assert len(rows) >= 70 and len(pages) >= 50
    if python_docs.installed():
        assert len(python_docs.load_questions()) == len(rows)
