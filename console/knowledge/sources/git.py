"""Git repository: the readable files of one branch, fetched shallowly with the git CLI.

The repository is cached under DATA_DIR/sources/git/; each sync fetches the branch's newest commit
(depth 1) and lists its tree, so an item's version is its blob sha and an unchanged file is never
read again. Answers link to the file at the commit on GitHub, GitLab, Codeberg and Gitea-style hosts.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from django.conf import settings

from console.knowledge.sources.base import (
    Connector,
    Content,
    Item,
    ItemError,
    OptionsError,
    SourceError,
    register,
)
from console.knowledge.sources.common import (
    allowed_folder,
    as_list,
    matches,
    max_item_bytes,
    readable_name,
    too_large,
)

REF = "refs/answerbot/sync"
_BRANCH = re.compile(r"[A-Za-z0-9._/-]{1,200}")
_SCP = re.compile(r"(?P<user>[A-Za-z0-9._-]+@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/].*)")
# Transports git may use: never ext:: (it runs commands) or fd::.
_PROTOCOLS = "file:git:http:https:ssh"


def redact(text: str) -> str:
    """`text` with any user:password@ in URLs replaced, so a credential never reaches the admin."""
    return re.sub(r"(\w+://)[^/@\s]+@", r"\1***@", text)


def _check_url(url: str) -> None:
    if url.startswith("-"):
        raise OptionsError("The option 'url' must not start with '-'.")
    scheme = urlsplit(url).scheme
    if scheme in ("http", "https", "ssh", "git"):
        if urlsplit(url).password:
            raise OptionsError(
                "Put no password or token in the repository URL (it would be stored and shown): give the "
                "worker access with a git credential helper or an SSH deploy key instead."
            )
        return
    if scheme == "file" or (not scheme and url.startswith("/")):
        allowed_folder(Path(urlsplit(url).path if scheme else url))
        return
    if not scheme and _SCP.fullmatch(url):
        return
    raise OptionsError(
        f"The option 'url' takes an https://, ssh:// or git@host:owner/repo URL (or a local path), not {url!r}."
    )


def forge_link(url: str, commit: str, path: str) -> str:
    """The web page of `path` at `commit` on a known forge; empty for other hosts."""
    scp = _SCP.fullmatch(url) if "://" not in url else None
    host, repo = (scp["host"], scp["path"]) if scp else (urlsplit(url).hostname or "", urlsplit(url).path)
    repo = repo.strip("/").removesuffix(".git")
    if not host or not repo or urlsplit(url).scheme == "file":
        return ""
    base = f"https://{host}/{repo}"
    file = quote(path)
    if host == "github.com" or host.startswith("github."):
        return f"{base}/blob/{commit}/{file}"
    if host == "gitlab.com" or host.startswith("gitlab."):
        return f"{base}/-/blob/{commit}/{file}"
    if host == "codeberg.org" or host.startswith(("gitea.", "forgejo.")):
        return f"{base}/src/commit/{commit}/{file}"
    if host == "bitbucket.org":
        return f"{base}/src/{commit}/{file}"
    return ""


@register
class GitConnector(Connector):
    kind = "git"
    option_names = ("url", "branch", "paths")
    required = ("url",)

    @classmethod
    def validate(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        cleaned = super().validate(options)
        if not isinstance(cleaned["url"], str):
            raise OptionsError("The option 'url' takes the repository's URL.")
        _check_url(cleaned["url"])
        branch = cleaned.get("branch") or ""
        if branch and (
            not isinstance(branch, str) or not _BRANCH.fullmatch(branch) or branch.startswith("-")
        ):
            raise OptionsError(f"The option 'branch' takes a branch name, e.g. main, not {branch!r}.")
        if "paths" in cleaned:
            cleaned["paths"] = as_list(cleaned, "paths")
        return cleaned

    def __init__(self, options: Mapping[str, Any], secrets: Mapping[str, str] | None = None) -> None:
        super().__init__(options, secrets)
        self._sizes: dict[str, int] = {}

    @property
    def cache(self) -> Path:
        digest = hashlib.sha256(self.options["url"].encode()).hexdigest()[:24]
        return Path(settings.DATA_DIR) / "sources" / "git" / digest

    def items(self) -> Iterator[Item]:
        try:
            _check_url(self.options["url"])
        except OptionsError as err:
            raise SourceError(str(err)) from err
        commit = self._fetch()
        listing = self._git("ls-tree", "-r", "-l", "-z", REF, error=SourceError).decode("utf-8", "replace")
        patterns = as_list(self.options, "paths")
        for entry in filter(None, listing.split("\0")):
            meta, _, path = entry.partition("\t")
            mode, kind, sha, size = meta.split()
            if kind != "blob" or mode == "120000" or readable_name(path) is None:
                continue  # submodules, symbolic links and unreadable types
            if not matches(path, patterns, ()):
                continue
            self._sizes[sha] = int(size)
            yield Item(key=path, version=sha, url=forge_link(self.options["url"], commit, path))

    def fetch(self, item: Item, previous_version: str = "") -> Content:
        size = self._sizes.get(item.version, 0)
        if size > max_item_bytes():
            raise ItemError(too_large(size))
        data = self._git("cat-file", "blob", item.version, error=ItemError)
        return Content(filename=readable_name(item.key) or Path(item.key).name, data=data)

    def _fetch(self) -> str:
        """Fetch the branch's newest commit (depth 1) into the cache; returns its sha."""
        if not (self.cache / "HEAD").exists():
            self.cache.mkdir(parents=True, exist_ok=True)
            self._git("init", "--bare", "--quiet", error=SourceError)
        branch = self.options.get("branch") or "HEAD"
        refspec = f"+{branch if branch == 'HEAD' else 'refs/heads/' + branch}:{REF}"
        url = self.options["url"]
        self._git("fetch", "--depth=1", "--no-tags", "--quiet", "--", url, refspec, error=SourceError)
        return self._git("rev-parse", REF, error=SourceError).decode().strip()

    def _git(self, *args: str, error: type[Exception]) -> bytes:
        env = {
            **os.environ,
            "GIT_TERMINAL_PROMPT": "0",  # a repository that needs credentials fails instead of waiting
            "GIT_ASKPASS": "",
            "SSH_ASKPASS": "",
            "GCM_INTERACTIVE": "never",
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
            "GIT_ALLOW_PROTOCOL": _PROTOCOLS,
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        command = ["git", "-C", str(self.cache), "-c", "credential.interactive=never", *args]
        try:
            done = subprocess.run(
                command, capture_output=True, env=env, timeout=settings.GIT_TIMEOUT, check=False
            )
        except FileNotFoundError as err:
            raise error("git is not installed on the worker: install it to sync git sources.") from err
        except subprocess.TimeoutExpired as err:
            raise error(
                f"git took longer than GIT_TIMEOUT ({settings.GIT_TIMEOUT} s): nothing was deleted."
            ) from err
        if done.returncode != 0:
            raise error(_explain(done.stderr.decode("utf-8", "replace"), self.options["url"]))
        return done.stdout


def _explain(stderr: str, url: str) -> str:
    """git's complaint, as a person can act on it, with no credential in it."""
    shown = redact(url)
    text = redact(stderr.strip())
    lowered = text.lower()
    if (
        "terminal prompts disabled" in lowered
        or "authentication failed" in lowered
        or "permission denied" in lowered
    ):
        return (
            f"The repository {shown} needs credentials the worker does not have: give it read access "
            "(a git credential helper, or an SSH deploy key), then sync again."
        )
    if "couldn't find remote ref" in lowered or "not our ref" in lowered:
        return f"The repository {shown} has no such branch: check the option 'branch'."
    if (
        "could not resolve host" in lowered
        or "connection refused" in lowered
        or "unable to access" in lowered
    ):
        return f"The repository {shown} could not be reached ({text.splitlines()[-1]}): nothing was deleted."
    if "does not appear to be a git repository" in lowered or "not found" in lowered:
        return f"There is no repository at {shown} (or the worker may not see it): check the option 'url'."
    return f"git failed for {shown}: {text.splitlines()[-1] if text else 'no message'}"
