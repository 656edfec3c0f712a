"""What the `herald directory` verbs do: check a file, import it, list coverage gaps. Loaded only
when such a verb runs, so the operator verbs (`herald incident ...`) start without the service."""

from __future__ import annotations

import sys

from service import directory
from service.settings import Settings
from service.store import Store


def validate_file(file: str) -> int:
    loaded, errors = directory.load_directory(file)
    if errors:
        _print_errors(errors)
        return 1
    print(f"OK: {len(loaded.partners)} partners, {loaded.contact_count} contacts")
    return 0


async def import_file(settings: Settings, file: str) -> int:
    store = Store(settings.database.url)
    try:
        await store.upgrade()
        counts, errors = await directory.import_directory_file(store, file, actor="cli")
        if errors:
            _print_errors(errors)
            print(f"{file}: nothing imported", file=sys.stderr)
            return 1
    except Exception as exc:
        print(f"{file}: import failed, nothing changed: {exc}", file=sys.stderr)
        return 1
    finally:
        await store.close()
    print(f"imported: {counts['partners']} partners, {counts['contacts']} contacts")
    return 0


async def show_coverage(settings: Settings) -> int:
    store = Store(settings.database.url)
    try:
        if settings.database.auto_migrate:
            await store.upgrade()
        async with store.read() as conn:
            gaps = await directory.coverage_gaps(conn)
    finally:
        await store.close()
    for gap in gaps:
        print(f"{gap['partner_id']}: {gap['name']}: {gap['reason']}")
    if gaps:
        print(f"{len(gaps)} partner(s) cannot be reached at tier 1", file=sys.stderr)
        return 1
    print("OK: every partner has a reachable tier-1 contact")
    return 0


def _print_errors(errors: list[directory.DirectoryError]) -> None:
    for error in errors:
        print(error, file=sys.stderr)
