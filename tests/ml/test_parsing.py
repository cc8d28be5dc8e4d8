"""Every format on a realistic small sample, and every kind of bad upload a person can meet."""

from __future__ import annotations

import io
import random
import zipfile

import docx
import pytest

from ml.parsing import SUPPORTED_EXTENSIONS, ParsedDocument, ParseError, Section, parse_document


def build_pdf(pages: list[list[str]], title: str | None = None) -> bytes:
    """A minimal valid PDF: one Helvetica text line per string, with a correct xref table."""

    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    page_ids = [4 + 2 * i for i in range(len(pages))]
    kids = " ".join(f"{i} 0 R" for i in page_ids)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for page_id, lines in zip(page_ids, pages, strict=True):
        ops = "".join(f"({esc(line)}) Tj T* " for line in lines)
        stream = f"BT /F1 12 Tf 14 TL 72 720 Td {ops}ET".encode() if lines else b""
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (page_id + 1)
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    if title:
        objects.append(f"<< /Title ({esc(title)}) >>".encode())
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    info = b" /Info %d 0 R" % len(objects) if title else b""
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, info, xref)
    return bytes(out)


def build_docx() -> bytes:
    document = docx.Document()
    document.add_heading("Deploy Runbook", 0)
    document.add_paragraph("Read this before every release.")
    document.add_heading("Preparation", 1)
    document.add_paragraph("Freeze the main branch an hour before.")
    document.add_heading("Database", 2)
    document.add_paragraph("Take a snapshot first.", style="List Bullet")
    table = document.add_table(rows=2, cols=2)
    for (row, col), text in {(0, 0): "Host", (0, 1): "Role", (1, 0): "db-1", (1, 1): "primary"}.items():
        table.cell(row, col).text = text
    document.add_heading("Rollback", 1)
    document.add_paragraph("Redeploy the previous tag.")
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def headings(doc: ParsedDocument) -> list[str]:
    return [s.heading for s in doc.sections]


def all_text(doc: ParsedDocument) -> str:
    return "\n".join(s.text for s in doc.sections)


def test_supported_extensions_are_the_documented_ones():
    assert SUPPORTED_EXTENSIONS == (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx")


def test_txt_title_is_first_short_line_and_paragraphs_are_kept():
    data = b"\xef\xbb\xbfOn-call Guide\r\n\r\nPage the primary first.\r\nThen the secondary.\r\n\r\nEscalate after 15 min."
    doc = parse_document("oncall.txt", data)
    assert doc.title == "On-call Guide"
    assert doc.sections == [
        Section("", "Page the primary first.\nThen the secondary.\n\nEscalate after 15 min.")
    ]


def test_txt_with_long_first_line_is_titled_by_file_stem():
    data = ("word " * 60).encode() + b"\n\nmore text"
    doc = parse_document("notes/meeting_notes.txt", data)
    assert doc.title == "meeting_notes"
    assert all_text(doc).startswith("word word")


MARKDOWN = b"""---
layout: page
---
# Platform Handbook

Welcome to the **platform** team. See [the wiki](https://wiki.example.com).

## Setup

Install `uv` first.

```bash
# this comment is code, not a heading
uv sync
```

### Database

Use *PostgreSQL* 16 with pgvector.

| Setting | Value |
|---------|-------|
| port    | 5432  |

## Support
Ask in ![chat icon](icon.png) #platform.

Glossary
--------

* RQ: the job queue
"""


def test_markdown_headings_become_heading_paths():
    doc = parse_document("handbook.md", MARKDOWN)
    assert doc.title == "Platform Handbook"
    assert headings(doc) == ["", "Setup", "Setup › Database", "Support", "Glossary"]
    by_heading = {s.heading: s.text for s in doc.sections}
    assert by_heading[""] == "Welcome to the platform team. See the wiki."
    assert "# this comment is code, not a heading\nuv sync" in by_heading["Setup"]
    assert (
        by_heading["Setup › Database"]
        == "Use PostgreSQL 16 with pgvector.\n\n| Setting | Value |\n| port    | 5432  |"
    )
    assert by_heading["Support"] == "Ask in chat icon #platform."
    assert by_heading["Glossary"] == "- RQ: the job queue"


def test_markdown_with_several_h1s_keeps_them_in_paths_and_front_matter_title_wins():
    data = b"---\ntitle: 'Release Notes'\n---\n# v2\n\nNew API.\n\n## Fixes\n\nA crash.\n\n# v1\n\nFirst.\n"
    doc = parse_document("CHANGES.markdown", data)
    assert doc.title == "Release Notes"
    assert headings(doc) == ["v2", "v2 › Fixes", "v1"]


HTML = """<!doctype html>
<html><head><title>Backups — Acme Docs</title><style>body { color: red }</style></head>
<body>
<nav><a href="/">Home</a> | <a href="/docs">Docs</a></nav>
<h1>Backups</h1>
<p>We back up <b>every</b> database
   nightly.</p>
<h2>Restore</h2>
<ol><li>Stop the app.</li><li>Run <code>restore.sh</code>.</li></ol>
<table><tr><th>Host</th><th>Schedule</th></tr><tr><td>db-1</td><td>02:00</td></tr></table>
<h3>Checks</h3>
<pre>psql -c 'select 1'
  -- expect one row</pre>
<p>Line one<br>line two</p>
<script>trackPageView("café")</script>
<footer>© Acme</footer>
</body></html>""".encode()


def test_html_sections_follow_headings_and_noise_is_dropped():
    doc = parse_document("backups.html", HTML)
    assert doc.title == "Backups — Acme Docs"
    assert headings(doc) == ["", "Restore", "Restore › Checks"]
    assert doc.sections[0].text == "We back up every database nightly."
    assert doc.sections[1].text == "Stop the app.\n\nRun restore.sh.\n\nHost | Schedule\n\ndb-1 | 02:00"
    assert doc.sections[2].text == "psql -c 'select 1'\n  -- expect one row\n\nLine one\nline two"
    text = all_text(doc)
    for noise in ("Home", "color: red", "trackPageView", "Acme</footer>", "© Acme"):
        assert noise not in text


def test_html_without_title_tag_is_titled_by_its_h1_and_declared_charset_is_honoured():
    data = '<meta charset="iso-8859-1"><h1>Café menu</h1><p>Crème brûlée</p>'.encode("latin-1")
    doc = parse_document("menu.htm", data)
    assert doc.title == "Café menu"
    assert doc.sections == [Section("", "Crème brûlée")]


def test_pdf_text_comes_per_page_with_metadata_title():
    data = build_pdf([["Install Guide", "Run the (new) installer."], ["Reboot when asked."]], title="Setup")
    doc = parse_document("guide.pdf", data)
    assert doc.title == "Setup"
    assert headings(doc) == ["Page 1", "Page 2"]
    assert doc.sections[0].text == "Install Guide\nRun the (new) installer."
    assert doc.sections[1].text == "Reboot when asked."


def test_pdf_without_metadata_is_titled_by_its_first_line():
    doc = parse_document("guide.pdf", build_pdf([[], ["Quarterly Report", "Revenue grew."]]))
    assert doc.title == "Quarterly Report"
    assert headings(doc) == ["Page 2"]


def test_docx_heading_styles_start_sections_and_tables_are_included():
    doc = parse_document("runbook.docx", build_docx())
    assert doc.title == "Deploy Runbook"
    assert doc.sections == [
        Section("", "Read this before every release."),
        Section("Preparation", "Freeze the main branch an hour before."),
        Section("Preparation › Database", "- Take a snapshot first.\n\nHost | Role\ndb-1 | primary"),
        Section("Rollback", "Redeploy the previous tag."),
    ]


def zip_without_word_part() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("hello.txt", "not a word document")
    return buf.getvalue()


BAD_INPUTS = {
    "empty": ("notes.txt", b"", "notes.txt is empty"),
    "blank": ("notes.md", b" \n\t\n", "notes.md is empty"),
    "nul bytes": ("notes.txt", b"PK\x03\x04\x00\x00binary", "looks like a binary file"),
    "random bytes": ("page.html", bytes(b or 1 for b in random.Random(7).randbytes(4096)), "binary file"),
    "latin-1": (
        "notes.txt",
        "Résumé".encode("latin-1"),
        "not valid UTF-8 text (byte 0xe9 at byte offset 1, line 1)",
    ),
    "utf-16": ("notes.txt", "hello".encode("utf-16"), "saved as UTF-16 text: re-save it as UTF-8"),
    "not a pdf": ("scan.pdf", b"<html>oops</html>", "could not be read as a PDF"),
    "truncated pdf": ("scan.pdf", build_pdf([["Some text"]])[:300], "could not be read as a PDF"),
    "scanned pdf": ("scan.pdf", build_pdf([[], []]), "no extractable text; it looks like scanned images"),
    "corrupt docx": ("memo.docx", b"PK\x03\x04 broken zip", "could not be opened as a Word document"),
    "zip not docx": ("memo.docx", zip_without_word_part(), "could not be opened as a Word document"),
    "unsupported": (
        "memo.pages",
        b"data",
        "Unsupported file type .pages: upload .txt, .md, .html, .pdf or .docx",
    ),
    "no extension": ("README", b"data", "Unsupported file type (no extension)"),
    "headings only": ("empty.md", b"# Title\n\n## Section\n", "contains no readable text"),
    "scripts only": ("app.html", b"<script>run()</script><style>p{}</style>", "contains no readable text"),
}


@pytest.mark.parametrize("filename,data,message", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_raises_parse_error_with_a_specific_message(filename, data, message):
    with pytest.raises(ParseError) as info:
        parse_document(filename, data)
    assert message in str(info.value)


def test_utf8_error_counts_offset_in_the_file_as_uploaded_and_says_to_resave():
    with pytest.raises(ParseError, match=r"byte 0xff at byte offset 17, line 2\): re-save the file as UTF-8"):
        parse_document("notes.md", b"\xef\xbb\xbffine line\nbad \xff byte")


def test_file_over_the_limit_states_size_and_limit_in_mb():
    data = b"a" * (3 * 1024 * 1024)
    with pytest.raises(ParseError, match=r"big\.txt is 3\.0 MB, over the 2\.0 MB limit"):
        parse_document("big.txt", data, max_bytes=2 * 1024 * 1024)
    assert parse_document("big.txt", data, max_bytes=len(data)).sections


def test_messages_for_different_problems_differ():
    messages = set()
    for filename, data, _ in BAD_INPUTS.values():
        with pytest.raises(ParseError) as info:
            parse_document(filename, data)
        messages.add(str(info.value).replace(filename, "FILE").split(" (")[0])
    assert len(messages) >= 9


@pytest.mark.parametrize("extension", SUPPORTED_EXTENSIONS)
def test_garbage_never_leaks_a_library_exception(extension):
    rng = random.Random(extension)
    samples = [bytes(rng.randrange(256) for _ in range(n)) for n in (1, 16, 512)]
    samples += [build_pdf([["x"]])[:n] for n in (9, 120, 400)] + [
        build_docx()[:2000],
        b"%PDF-1.7\n" + bytes(64),
    ]
    for data in samples:
        try:
            parse_document(f"file{extension}", data)
        except ParseError:
            pass
