"""Directory import: `python -m bench.import [--sizes 10000,100000] [--database URL]`.

For each size, writes a directory file of that many partners (3 contacts each: tier-1 email and
phone, tier-2 email, tier-3 email; Japanese and English partners; national and E.164 numbers)
and runs `herald directory import FILE` as an operator would, in a process of its own, on a fresh
database (`--database`, default a fresh SQLite file; a PostgreSQL URL is emptied first). Measured:
the command's wall time, its CPU time (user + system) and its peak RSS (the kernel's counts for
that child, from wait4): on a shared machine the wall time grows with the others' load, the CPU
time much less.

Then, on the same database, the same file with one bad phone number in its last partner: the
command must fail naming FILE:LINE, and the directory must be exactly as before (all or nothing).

Aims: 10,000 partners in ≤ 3 s and ≤ 200 MB; every size ≤ 200 MB (bounded memory). A miss exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from bench.common import backend_name, fresh_database, table, verdict
from service.settings import ROOT
from service.store import Store

AIM_SECONDS_AT_10K = 3.0
AIM_RSS_MB = 200
BAD_PHONE = "+81 12"


def write_directory(path: Path, partners: int, bad_last: bool = False) -> int:
    """The file, written in chunks; returns the line of the bad phone number when `bad_last`."""
    bad_line = 0
    line = 1
    with path.open("w", encoding="utf-8") as out:
        out.write("partners:\n")
        for p in range(partners):
            ja = p % 4 != 0
            number = f"90-{1000 + p // 10000:04d}-{p % 10000:04d}"
            phone = f'"+81 {number}"' if p % 2 else f'"0{number}"'
            if bad_last and p == partners - 1:
                phone = f'"{BAD_PHONE}"'
                bad_line = line + 11
            block = (
                f"  - id: partner-{p:06d}\n"
                f"    name: {'取引先 ' + str(p) + ' 株式会社' if ja else 'Partner ' + str(p) + ' Ltd'}\n"
                f"    language: {'ja' if ja else 'en'}\n"
                f"    components: [order-api, edi-gateway, payments]\n"
                f"    contacts:\n"
                f"      - key: responsible\n"
                f"        name: {'担当 ' + str(p) if ja else 'Owner ' + str(p)}\n"
                f"        tier: 1\n"
                f"        email: owner{p}@partner{p}.example.jp\n"
                f"        channels: [sms, email]\n"
                f"        phone: {phone}\n"
                f"      - key: operations\n"
                f"        name: {'運用 ' + str(p) if ja else 'Ops ' + str(p)}\n"
                f"        tier: 2\n"
                f"        email: ops{p}@partner{p}.example.jp\n"
                f"      - key: informed\n"
                f"        name: {'情報 ' + str(p) if ja else 'Info ' + str(p)}\n"
                f"        tier: 3\n"
                f"        email: info{p}@partner{p}.example.jp\n"
            )
            out.write(block)
            line += block.count("\n")
    return bad_line


def run_import(file: Path, database_url: str) -> tuple[int, float, float, float, str]:
    """`herald directory import FILE`: exit code, wall seconds, CPU seconds, peak RSS MB (wait4's
    counts for this child alone), stderr."""
    env = {**os.environ, "HERALD_DATABASE__URL": database_url, "HERALD_DIRECTORY__IMPORT_ON_START": "false"}
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "directory", "import", str(file)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    return process.returncode, elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, stderr


async def directory_state(url: str) -> tuple[int, int, str]:
    store = Store(url)
    try:
        async with store.read() as conn:
            partners = int((await conn.execute(text("SELECT count(*) FROM partners"))).scalar_one())
            contacts = int((await conn.execute(text("SELECT count(*) FROM contacts"))).scalar_one())
            phone = (
                await conn.execute(text("SELECT phone FROM contacts WHERE phone IS NOT NULL ORDER BY id DESC LIMIT 1"))
            ).scalar()
    finally:
        await store.close()
    return partners, contacts, str(phone)


async def main(args: argparse.Namespace) -> int:
    rows = [
        (
            "partners",
            "contacts",
            "seconds",
            "CPU s",
            "peak RSS MB",
            "imported",
            "bad file refused at",
            "its peak RSS MB",
            "unchanged after",
        )
    ]
    ok = True
    with tempfile.TemporaryDirectory(prefix="herald-import-") as tmp:
        workdir = Path(tmp)
        for size in sorted(args.sizes):
            url = await fresh_database(args.database, workdir, name=f"import-{size}")
            good, bad = workdir / f"partners-{size}.yaml", workdir / f"partners-{size}-bad.yaml"
            write_directory(good, size)
            bad_line = write_directory(bad, size, bad_last=True)
            code, seconds, cpu, peak, stderr = run_import(good, url)
            if code != 0:
                print(stderr, file=sys.stderr)
            before = await directory_state(url)
            imported = code == 0 and before[:2] == (size, size * 3)
            refused_code, _, _, refused_peak, refused = run_import(bad, url)
            named = f"{bad}:{bad_line}:" in refused
            after = await directory_state(url)
            unchanged = refused_code != 0 and after == before
            met = imported and named and unchanged and peak <= AIM_RSS_MB
            if size == 10_000:
                met &= seconds <= AIM_SECONDS_AT_10K
            ok &= met
            rows.append(
                (
                    f"{size:,}",
                    f"{before[1]:,}",
                    f"{seconds:.2f}",
                    f"{cpu:.2f}",
                    f"{peak:.0f}",
                    str(imported) if imported else f"NO: {stderr.strip()[-200:]}",
                    f"line {bad_line}" if named else f"NOT NAMED: {refused.strip()[-200:]}",
                    f"{refused_peak:.0f}",
                    str(unchanged),
                )
            )
            print(f"  {size:,} partners: {seconds:.2f} s ({cpu:.2f} s CPU), {peak:.0f} MB", file=sys.stderr, flush=True)
    print(table(rows))
    print(
        f"\n{backend_name(url)}: 10,000 partners ≤ {AIM_SECONDS_AT_10K:.0f} s, every size ≤ {AIM_RSS_MB} MB peak RSS,"
        f" a bad file refused with FILE:LINE and nothing changed: {verdict(ok)}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes", type=lambda t: [int(x) for x in t.split(",")], default=[10_000, 100_000], help="partner counts"
    )
    parser.add_argument("--database", default=None, help="a PostgreSQL URL to run on (it is emptied); default SQLite")
    sys.exit(asyncio.run(main(parser.parse_args())))
