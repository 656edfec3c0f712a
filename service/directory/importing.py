"""The directory into the database: a whole-file import, the start-up import of an empty
directory, and the partners no incident could reach at tier 1."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from service.directory.parsing import NeedsACarefulLook, lines_of, load_directory, read_parts
from service.directory.validation import Directory, DirectoryError
from service.store import Store
from service.store import partners as partner_store
from service.store import suppressions as suppression_store
from service.store.records import audit

log = logging.getLogger("herald.directory")


async def import_directory(store: Store, directory: Directory, actor: str = "directory-import") -> dict[str, int]:
    """Replace the whole directory in one transaction; counts of what is there afterwards."""
    async with store.begin() as conn:
        counts = await partner_store.replace_all(conn, directory.rows())
        await audit(conn, "directory.imported", "directory", None, actor, counts)
    log.info("directory imported: %(partners)s partners, %(contacts)s contacts", counts)
    return counts


async def import_directory_file(
    store: Store, path: str | Path, actor: str = "directory-import"
) -> tuple[dict[str, int], list[DirectoryError]]:
    """Replace the directory from a file, all or nothing: counts, or the file's errors (then
    nothing changed). Read, validated and written a few hundred partners at a time in one
    transaction, so memory stays bounded whatever the file's size; once a part has errors the rest
    is only checked, for every error, and the transaction rolled back. A file the part reader does
    not take (a YAML syntax error, another shape) is read whole and carefully instead."""
    try:
        async with store.begin() as conn:
            replacement = await partner_store.DirectoryReplacement.begin(conn)
            parts = read_parts(lines_of(path), str(path))  # read and parsed in a thread, a part at a time
            errors: list[DirectoryError] = []
            while (part := await asyncio.to_thread(next, parts, None)) is not None:
                partners, part_errors = part
                errors += part_errors
                if not errors:
                    await replacement.add(conn, [p.row_with_contacts() for p in partners])
            if errors:
                raise _Refused(errors)
            counts = await replacement.finish(conn)
            await audit(conn, "directory.imported", "directory", None, actor, counts)
    except _Refused as refused:
        return {}, refused.errors
    except (NeedsACarefulLook, OSError, UnicodeDecodeError):
        directory, errors = load_directory(path)
        if errors:
            return {}, errors
        return await import_directory(store, directory, actor), []
    log.info("directory imported: %(partners)s partners, %(contacts)s contacts", counts)
    return counts, []


class _Refused(Exception):
    """The file has errors: the import's transaction is rolled back."""

    def __init__(self, errors: list[DirectoryError]) -> None:
        super().__init__(f"{len(errors)} error(s) in the directory file")
        self.errors = errors


class DirectoryFileInvalid(Exception):
    def __init__(self, errors: list[DirectoryError]) -> None:
        super().__init__("the partner directory file is invalid:\n" + "\n".join(str(e) for e in errors))
        self.errors = errors


async def import_if_empty(store: Store, path: str | Path) -> None:
    """At start-up: fill an empty directory from the file; an edited directory is left alone."""
    file = Path(path)
    if not await asyncio.to_thread(file.exists):
        log.warning("directory file %s not found; the partner directory was not imported", file)
        return
    async with store.read() as conn:
        if (await partner_store.counts(conn))["partners"]:
            return
    directory, errors = load_directory(file)
    if errors:
        raise DirectoryFileInvalid(errors)
    async with store.begin() as conn:
        if (await partner_store.counts(conn))["partners"]:
            return  # another instance imported it meanwhile
        counts = await partner_store.replace_all(conn, directory.rows())
        await audit(conn, "directory.imported", "directory", None, "start-up", {**counts, "file": file.name})
    log.info("directory imported from %s: %s partners, %s contacts", file.name, counts["partners"], counts["contacts"])


NO_TIER1 = "no tier-1 contact"
TIER1_UNREACHABLE = "tier-1 contacts have no email or phone"
TIER1_SUPPRESSED = "every email and phone of the tier-1 contacts is suppressed"


async def coverage_gaps(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Partners that no incident could reach at tier 1, ordered by id. Suppressed addresses do
    not count as a way to reach a contact."""
    suppressed = await suppression_store.active(conn)
    gaps = []
    for row in await partner_store.tier1_coverage(conn):
        if row["tier1"] == 0:
            gaps.append({"partner_id": row["id"], "name": row["name"], "reason": NO_TIER1})
        elif row["tier1_reachable"] == 0:
            gaps.append({"partner_id": row["id"], "name": row["name"], "reason": TIER1_UNREACHABLE})
        elif suppressed and not await _tier1_reachable_unsuppressed(conn, row["id"], suppressed):
            gaps.append({"partner_id": row["id"], "name": row["name"], "reason": TIER1_SUPPRESSED})
    return gaps


async def _tier1_reachable_unsuppressed(
    conn: AsyncConnection, partner_id: str, suppressed: frozenset[tuple[str, str]]
) -> bool:
    for contact in await partner_store.list_contacts(conn, partner_id):
        if contact["tier"] != 1:
            continue
        if contact["email"] and ("email", contact["email"]) not in suppressed:
            return True
        if contact["phone"] and ("sms", contact["phone"]) not in suppressed:
            return True
    return False
