"""A git source against a local repository that gains, changes and deletes files between syncs; a
repository needing credentials; URLs that must never reach git; links to the file at the commit."""

from __future__ import annotations

import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from console.knowledge import syncing
from console.knowledge.models import Document, Source, Sync
from console.knowledge.sources import OptionsError
from console.knowledge.sources.git import GitConnector, forge_link
from tests.knowledge.conftest import EXPENSES_MD, ONCALL_MD

pytestmark = pytest.mark.django_db


def git(repo, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@x",
    }
    import os

    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env={**os.environ, **env}
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path, settings):
    settings.SYNC_FOLDER_ROOTS = [tmp_path.resolve()]
    settings.DATA_DIR = tmp_path / "data"
    path = tmp_path / "handbook"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "docs").mkdir()
    (path / "docs" / "oncall.md").write_text(ONCALL_MD)
    (path / "expenses.md").write_text(EXPENSES_MD)
    (path / "guide.rst").write_text(
        "Style guide\n===========\n\nWrite short sentences in the active voice.\n"
    )
    (path / "build.py").write_text("print('not documentation')\n")
    git(path, "add", ".")
    git(path, "commit", "-qm", "first")
    return path


def commit(repo, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)


def sync(source: Source) -> Sync:
    result = syncing.sync_source(source.pk).sync
    source.refresh_from_db()
    return result


@pytest.fixture
def source(repo, collection):
    return Source.objects.create(
        name="repo", kind="git", collection=collection, options={"url": f"file://{repo}", "branch": "main"}
    )


def test_first_sync_then_no_change_then_change_add_and_delete(source, repo):
    result = sync(source)
    assert (result.status, result.added) == ("ok", 3), result.error
    keys = set(Document.objects.filter(source_ref=source).values_list("item_key", flat=True))
    assert keys == {"docs/oncall.md", "expenses.md", "guide.rst"}
    blob = git(repo, "rev-parse", "HEAD:expenses.md")
    assert Document.objects.get(item_key="expenses.md").item_version == blob

    result = sync(source)
    assert (result.added, result.updated, result.unchanged, result.deleted) == (0, 0, 3, 0)

    (repo / "expenses.md").write_text(EXPENSES_MD.replace("60 euros", "75 euros"))
    (repo / "docs" / "new.md").write_text("# Coffee\n\nThe coffee machine is on the third floor.\n")
    (repo / "guide.rst").unlink()
    commit(repo, "second")
    result = sync(source)
    assert (result.status, result.added, result.updated, result.unchanged, result.deleted) == (
        "ok",
        1,
        1,
        1,
        1,
    )
    text = " ".join(Document.objects.get(item_key="expenses.md").chunks.values_list("text", flat=True))
    assert "75 euros" in text


def test_paths_globs_choose_the_files(source, repo):
    source.options = {**source.options, "paths": ["docs/*"]}
    source.save()
    sync(source)
    assert list(Document.objects.filter(source_ref=source).values_list("item_key", flat=True)) == [
        "docs/oncall.md"
    ]


def test_a_missing_branch_or_repository_fails_and_prunes_nothing(source, repo):
    sync(source)
    source.options = {**source.options, "branch": "nope"}
    source.save()
    result = sync(source)
    assert result.status == "failed" and "no such branch" in result.error
    assert Document.objects.filter(source_ref=source).count() == 3
    source.options = {"url": f"file://{repo}-moved"}
    source.save()
    result = sync(source)
    assert result.status == "failed" and "no repository" in result.error.lower()
    assert Document.objects.filter(source_ref=source).count() == 3


def test_a_repository_that_needs_credentials_fails_clearly(collection, settings, tmp_path):
    settings.DATA_DIR = tmp_path

    class NeedsLogin(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NeedsLogin)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        source = Source.objects.create(
            name="private",
            kind="git",
            collection=collection,
            options={"url": f"http://127.0.0.1:{server.server_port}/team/handbook.git"},
        )
        result = sync(source)
    finally:
        server.shutdown()
        server.server_close()
    assert result.status == "failed" and "needs credentials" in result.error


@pytest.mark.parametrize(
    "url",
    [
        "ext::sh -c touch% /tmp/pwned",
        "--upload-pack=touch /tmp/pwned",
        "https://user:s3cret@github.com/team/handbook.git",
        "file:///etc",
    ],
)
def test_dangerous_urls_are_refused(url, settings, tmp_path):
    settings.SYNC_FOLDER_ROOTS = [tmp_path]
    with pytest.raises(OptionsError) as caught:
        GitConnector.validate({"url": url})
    assert "s3cret" not in str(caught.value)


def test_links_point_to_the_file_at_the_commit():
    sha = "0123abcd"
    assert forge_link("https://github.com/team/hb.git", sha, "docs/a b.md") == (
        "https://github.com/team/hb/blob/0123abcd/docs/a%20b.md"
    )
    assert (
        forge_link("git@gitlab.com:team/hb.git", sha, "a.md")
        == "https://gitlab.com/team/hb/-/blob/0123abcd/a.md"
    )
    assert (
        forge_link("https://codeberg.org/team/hb", sha, "a.md")
        == "https://codeberg.org/team/hb/src/commit/0123abcd/a.md"
    )
    assert forge_link("https://git.example.com/hb.git", sha, "a.md") == ""
