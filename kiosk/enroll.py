"""``kiosk enroll``: enrol students in bulk from ID photos.

Photos come from a folder of ``<userId>.jpg`` files (``.jpeg``/``.png`` too) or from the university's photo
service through a URL template such as ``https://photos.example/api/{userId}``, with an optional request
header read from an environment variable (never from the command line). Students come from a class roster
(``--lesson GUID --class-id N``) or a list of IDs. Each photo is checked (exactly one good face) and the
embedding is stored with SetEmbedding; refused photos are listed with a plain reason at the end.

The teacher's password is asked with getpass: it is never an argument, never printed, never stored.
Photos are read into memory and discarded; nothing is written to disk.
"""

from __future__ import annotations

import getpass
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests

from kiosk.errors import EmbeddingFormatError, EnrollmentRefused, KioskError, UpstreamError

USER_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class Summary:
    """What a bulk enrolment did; ``refused`` maps userId -> plain reason."""

    enrolled: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)

    def report(self) -> str:
        lines = [f"Enrolled {len(self.enrolled)} student(s); refused {len(self.refused)}."]
        for reason, count in Counter(self.refused.values()).most_common():
            lines.append(f"  {count} x {reason}")
        if self.refused:
            lines.append("Refused (fix the photo and run again for these IDs):")
            lines.extend(f"  {uid}: {reason}" for uid, reason in sorted(self.refused.items()))
        return "\n".join(lines)


def check_user_id(user_id: str) -> str:
    """Return ``user_id`` if it is a plain ID; refuse anything that could name another file or URL."""
    if not USER_ID.fullmatch(user_id):
        raise EnrollmentRefused("not a valid student ID (letters, digits, '-' and '_' only)")
    return user_id


class FolderPhotos:
    """Reads ``<userId>.jpg`` (or .jpeg/.png) from one folder, never outside it."""

    def __init__(self, folder: str | os.PathLike[str], max_bytes: int):
        self.folder = Path(folder).resolve()
        self.max_bytes = max_bytes
        if not self.folder.is_dir():
            raise KioskError(f"Photo folder {folder} does not exist.")

    def __call__(self, user_id: str) -> bytes:
        check_user_id(user_id)
        for suffix in PHOTO_SUFFIXES:
            for name in (user_id + suffix, user_id + suffix.upper()):
                path = (self.folder / name).resolve()
                if path.parent != self.folder:  # a symlink pointing elsewhere
                    raise EnrollmentRefused("photo is outside the photo folder")
                if path.is_file():
                    if path.stat().st_size > self.max_bytes:
                        raise EnrollmentRefused(f"photo is larger than {self.max_bytes // 1_000_000} MB")
                    return path.read_bytes()
        raise EnrollmentRefused("no photo in the folder")


class UrlPhotos:
    """Fetches photos from a URL template containing ``{userId}``."""

    def __init__(self, template: str, max_bytes: int, header: str = "", timeout: float = 15.0):
        if "{userId}" not in template or not template.startswith(("http://", "https://")):
            raise KioskError("The photo URL template must be an http(s) URL containing {userId}.")
        self.template = template
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.headers = {}
        if header:
            name, sep, value = header.partition(":")
            if not sep or not name.strip():
                raise KioskError("The photo request header must look like 'Name: value'.")
            self.headers[name.strip()] = value.strip()
        self.session = requests.Session()

    def __call__(self, user_id: str) -> bytes:
        url = self.template.replace("{userId}", check_user_id(user_id))
        try:
            with self.session.get(url, headers=self.headers, timeout=self.timeout, stream=True) as response:
                if response.status_code == 404:
                    raise EnrollmentRefused("the photo service has no photo")
                if response.status_code >= 400:
                    raise EnrollmentRefused(f"the photo service answered {response.status_code}")
                data = bytearray()
                for chunk in response.iter_content(64 * 1024):
                    data.extend(chunk)
                    if len(data) > self.max_bytes:
                        raise EnrollmentRefused(f"photo is larger than {self.max_bytes // 1_000_000} MB")
                return bytes(data)
        except requests.RequestException as exc:
            raise EnrollmentRefused(f"the photo service could not be reached ({type(exc).__name__})") from exc

    def close(self) -> None:
        self.session.close()


def enroll_many(user_ids: Iterable[str], fetch: Callable[[str], bytes], embed: Callable[[bytes], np.ndarray],
                store: Callable[[str, np.ndarray], None],
                progress: Callable[[int, int], None] = lambda done, total: None) -> Summary:
    """Fetch, embed and store each student's photo; one bad photo never stops the others."""
    ids = list(dict.fromkeys(user_ids))
    summary = Summary()
    for done, user_id in enumerate(ids, start=1):
        try:
            store(user_id, embed(fetch(user_id)))
            summary.enrolled.append(user_id)
        except (EnrollmentRefused, EmbeddingFormatError) as exc:
            summary.refused[user_id] = str(exc)
        except UpstreamError as exc:
            if exc.status is None or exc.status >= 500 or exc.status == 401:
                raise  # the API is down or the login is gone: stop instead of refusing everyone
            summary.refused[user_id] = str(exc)
        progress(done, len(ids))
    return summary


def progress_bar(stream=sys.stderr, width: int = 30) -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        filled = width * done // max(total, 1)
        stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done == total:
            stream.write("\n")
        stream.flush()

    return show


# --- the command ----------------------------------------------------------------------------------
def configure_parser(parser) -> None:
    who = parser.add_argument_group("which students")
    who.add_argument("--lesson", metavar="GUID", help="slot guidID of the class roster to enrol")
    who.add_argument("--class-id", type=int, metavar="N", help="classId (teaching week) of that roster")
    who.add_argument("--ids", nargs="+", metavar="USERID", help="student IDs to enrol")
    who.add_argument("--ids-file", metavar="FILE", help="file with one student ID per line")
    who.add_argument("--missing-only", action="store_true",
                     help="with --lesson: only students with no embedding yet")
    src = parser.add_argument_group("where the photos come from (one of)")
    src.add_argument("--photos", metavar="DIR", help="folder of <userId>.jpg ID photos")
    src.add_argument("--photo-url", metavar="TEMPLATE", help="URL template with {userId}, e.g. https://host/p/{userId}")
    src.add_argument("--header-env", metavar="VAR",
                     help="environment variable holding one request header 'Name: value' for --photo-url")
    parser.add_argument("--username", required=True, help="your university username (the password is asked)")
    parser.add_argument("--replace", action="store_true",
                        help="replace stored vectors instead of adding the new photo to them")
    parser.add_argument("--dry-run", action="store_true", help="check the photos, store nothing")


def _user_ids(args, roster) -> list[str]:
    ids: list[str] = []
    if roster is not None:
        ids += [s.user_id for s in roster if not (args.missing_only and s.face_embedders)]
    ids += args.ids or []
    if args.ids_file:
        ids += [line.strip() for line in Path(args.ids_file).read_text().splitlines() if line.strip()]
    return ids


def run_command(args, settings) -> int:
    from kiosk.model import embedding_format
    from kiosk.model.engine import Engine
    from kiosk.wiut.client import WiutClient

    if bool(args.photos) == bool(args.photo_url):
        print("Give exactly one of --photos DIR or --photo-url TEMPLATE.", file=sys.stderr)
        return 2
    if bool(args.lesson) != (args.class_id is not None):
        print("--lesson and --class-id go together.", file=sys.stderr)
        return 2
    max_bytes = int(settings.max_upload_mb * 1_000_000)
    if args.photos:
        fetch = FolderPhotos(args.photos, max_bytes)
    else:
        header = os.environ.get(args.header_env, "") if args.header_env else ""
        fetch = UrlPhotos(args.photo_url, max_bytes, header)
    client = WiutClient(settings.api_url, timeout=settings.api_timeout, retries=settings.api_retries)
    client.login(args.username, getpass.getpass(f"Password for {args.username}: "))
    method = settings.embedding_method
    roster = client.students(args.lesson, args.class_id, method) if args.lesson else None
    known = {s.user_id: s.face_embedders for s in roster or []}
    ids = _user_ids(args, roster)
    if not ids:
        print("No students to enrol.", file=sys.stderr)
        return 1
    engine = Engine.from_settings(settings)

    def store(user_id: str, vector: np.ndarray) -> None:
        vectors = vector[None, :]
        if not args.replace and known.get(user_id):
            try:
                old = embedding_format.decode(known[user_id], method=method, dim=vector.shape[0])
                vectors = np.vstack([old, vectors])[-embedding_format.MAX_VECTORS:]  # keep the newest
            except EmbeddingFormatError:
                pass  # the stored string is unusable: the new photo replaces it
        if not args.dry_run:
            client.set_embedding(user_id, embedding_format.encode(vectors, method), method)

    try:
        summary = enroll_many(ids, fetch, engine.embed_photo, store, progress_bar())
    finally:
        engine.close()
        client.logout()
        client.close()
        if isinstance(fetch, UrlPhotos):
            fetch.close()
    print(summary.report())
    return 0 if not summary.refused else 1
