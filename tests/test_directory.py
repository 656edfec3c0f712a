"""The partner directory file: validation with file/line/field, import all-or-nothing, coverage."""

from __future__ import annotations

import gc
import io
import textwrap
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from service import directory
from service.cli import main
from service.cli.directory_files import import_file, show_coverage
from service.directory import Directory, PartnerSpec, load_directory, parse_directory, parsing
from service.store import Store
from service.store import partners as partner_store
from service.store.tables import audit_log
from tests.helpers import EXAMPLE_DIRECTORY, make_settings

GOOD = """\
partners:
  - id: minato-shoji
    name: 株式会社みなと商事
    language: ja
    components: [order-api, payments]
    policy:
      minor: {1: [email, sms]}
    contacts:
      - key: suzuki
        name: 鈴木 一郎
        tier: 1
        email: Ichiro.Suzuki@Minato-Shoji.example.jp
        phone: "090-1234-5678"
        channels: [sms, email]
      - key: takahashi
        name: 高橋 直子
        tier: 2
        email: naoko.takahashi@minato-shoji.example.jp
  - id: pacific-freight
    name: Pacific Freight Ltd.
    language: en
    components: ["*"]
    contacts:
      - key: jwong
        name: James Wong
        tier: 1
        phone: "+1 415-555-0142"
        channels: [sms]
"""

# Each broken field sits on a line of its own; the expected (line, path) pairs are below.
BROKEN = """\
partners:
  - id: tokai-logistics
    name: 東海ロジスティクス株式会社
    language: ja
    components: [order-api]
    contacts:
      - key: sato
        name: 佐藤 花子
        tier: 1
        phone: "+81 90-1234"
      - key: ito
        name: 伊藤 健
        tier: 4
        email: ken.ito@@tokai.example.jp
      - key: kato
        name: 加藤 美咲
        tier: 2
        channels: [sms]
  - id: tokai-logistics
    name: 二重登録
    language: ja
    fax: "03-1234-5678"
"""
BROKEN_EXPECTED = [
    (10, "partners[0].contacts[0].phone", "phone"),
    (13, "partners[0].contacts[1].tier", "less than or equal to 3"),
    (14, "partners[0].contacts[1].email", "email"),
    (18, "partners[0].contacts[2].channels", "channel sms needs a phone"),
    (19, "partners[1].id", "duplicate partner id"),
    (22, "partners[1].fax", "unknown key"),
]


def write(tmp_path: Path, text: str, name: str = "partners.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


async def snapshot(store: Store) -> list[dict[str, Any]]:
    async with store.read() as conn:
        partners = await partner_store.list_partners(conn, limit=500)
        return [
            {
                "id": p["id"],
                "name": p["name"],
                "contacts": [
                    (c["key"], c["email"], c["phone"]) for c in await partner_store.list_contacts(conn, p["id"])
                ],
            }
            for p in partners
        ]


@pytest.fixture
async def store(db_url: str) -> Any:
    store = Store(db_url)
    await store.upgrade()
    yield store
    await store.close()


def test_example_directory_is_valid_and_fully_covered() -> None:
    example, errors = load_directory(EXAMPLE_DIRECTORY)
    assert errors == []
    assert len(example.partners) >= 18
    assert {p.language for p in example.partners} == {"ja", "en"}
    for partner in example.partners:
        tiers = [c.tier for c in partner.contacts]
        assert tiers.count(1) == 1, partner.id
        assert 1 <= tiers.count(2) <= 2, partner.id
        assert tiers.count(3) <= 2, partner.id
        tier1 = next(c for c in partner.contacts if c.tier == 1)
        assert tier1.email and tier1.phone, partner.id
        for contact in partner.contacts:
            if contact.phone:
                assert phonenumbers.is_valid_number(phonenumbers.parse(contact.phone)), (partner.id, contact.key)


def test_addresses_are_stored_normalised() -> None:
    parsed, errors = parse_directory(GOOD)
    assert errors == []
    suzuki = parsed.partners[0].contacts[0]
    assert suzuki.phone == "+819012345678"
    assert suzuki.email == "Ichiro.Suzuki@minato-shoji.example.jp"
    assert parsed.rows()[0]["policy"] == {"minor": {"1": ["email", "sms"]}}


def test_validation_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, BROKEN)
    parsed, errors = load_directory(path)
    assert parsed.partners == []
    found = [(e.line, e.field) for e in errors]
    assert found == [(line, field) for line, field, _ in BROKEN_EXPECTED]
    for error, (line, field, words) in zip(errors, BROKEN_EXPECTED, strict=True):
        assert words in error.message, error
        assert str(error).startswith(f"{path}:{line}:{error.column}: {field}: ")


def test_validation_reports_repeated_contact_keys_channels_and_bad_policy() -> None:
    _, errors = parse_directory(
        textwrap.dedent(
            """\
        partners:
          - id: Hokuriku_Seimitsu
            name: 北陸精密工業株式会社
            language: fr
            policy:
              urgent: {1: [email]}
              major: {2: [fax]}
            contacts:
              - key: tanaka
                name: 田中 誠
                tier: 1
                email: makoto.tanaka@hokuriku.example.jp
                channels: [email, email]
              - key: tanaka
                name: 田中 誠二
                tier: 2
        """
        ),
        "hokuriku.yaml",
    )
    by_field = {e.field: e for e in errors}
    assert set(by_field) == {
        "partners[0].id",
        "partners[0].language",
        "partners[0].policy.urgent",
        "partners[0].policy.major.2[0]",
        "partners[0].contacts[0].channels",
        "partners[0].contacts[1].key",
    }
    assert by_field["partners[0].contacts[1].key"].line == 14
    assert "duplicate contact key" in by_field["partners[0].contacts[1].key"].message
    assert "listed twice" in by_field["partners[0].contacts[0].channels"].message


def test_yaml_syntax_error_names_the_line() -> None:
    _, errors = parse_directory("partners:\n  - id: a\n    name: [unclosed\n", "bad.yaml")
    assert len(errors) == 1
    assert errors[0].path == "bad.yaml" and errors[0].line >= 3
    assert "not valid YAML" in errors[0].message


def test_cli_validate_prints_ok_for_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    example, _ = load_directory(EXAMPLE_DIRECTORY)
    assert main(["directory", "validate", str(EXAMPLE_DIRECTORY)]) == 0
    out = capsys.readouterr().out
    assert out.strip() == f"OK: {len(example.partners)} partners, {example.contact_count} contacts"


def test_cli_validate_prints_every_error_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, BROKEN)
    assert main(["directory", "validate", str(path)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == len(BROKEN_EXPECTED)
    for line, (number, field, _) in zip(lines, BROKEN_EXPECTED, strict=True):
        assert line.startswith(f"{path}:{number}:") and f": {field}: " in line
    assert "90-1234" not in "".join(lines)  # no address echoed back


def test_cli_validate_missing_file_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["directory", "validate", str(tmp_path / "nope.yaml")]) == 1
    assert "cannot read the file" in capsys.readouterr().err


async def test_import_with_any_error_changes_nothing(tmp_path: Path, db_url: str, store: Store) -> None:
    settings = make_settings(db_url)
    assert await import_file(settings, str(write(tmp_path, GOOD))) == 0
    before = await snapshot(store)
    assert [p["id"] for p in before] == ["minato-shoji", "pacific-freight"]

    assert await import_file(settings, str(write(tmp_path, BROKEN, "broken.yaml"))) == 1
    assert await snapshot(store) == before


async def test_import_replaces_directory_in_one_transaction(store: Store) -> None:
    first, _ = parse_directory(GOOD)
    assert await directory.import_directory(store, first) == {"partners": 2, "contacts": 3}
    before = await snapshot(store)
    async with store.read() as conn:
        suzuki_id = (await partner_store.get_contact(conn, "minato-shoji", "suzuki"))["id"]  # type: ignore[index]

    # A directory that passed no validation: the second partner repeats the first's id, so the
    # database refuses it half-way through; nothing of the half that went in may remain.
    example, _ = load_directory(EXAMPLE_DIRECTORY)
    clash = PartnerSpec.model_validate({**example.partners[0].model_dump(), "name": "重複"})
    with pytest.raises(IntegrityError):
        await directory.import_directory(store, Directory([*example.partners, clash]))
    assert await snapshot(store) == before

    # A good replacement: partners not in the file go, a contact that stays keeps its id.
    second, _ = parse_directory(GOOD.split("  - id: pacific-freight")[0])
    assert await directory.import_directory(store, second) == {"partners": 1, "contacts": 2}
    async with store.read() as conn:
        assert await partner_store.get_partner(conn, "pacific-freight") is None
        assert (await partner_store.get_contact(conn, "minato-shoji", "suzuki"))["id"] == suzuki_id  # type: ignore[index]
        actions = (await conn.execute(select(audit_log.c.action))).scalars().all()
    assert actions.count("directory.imported") == 2


async def test_import_if_empty_leaves_an_edited_directory_alone(tmp_path: Path, store: Store) -> None:
    await directory.import_if_empty(store, tmp_path / "missing.yaml")  # warns, does nothing
    assert await snapshot(store) == []
    await directory.import_if_empty(store, write(tmp_path, GOOD))
    assert len(await snapshot(store)) == 2
    await directory.import_if_empty(store, EXAMPLE_DIRECTORY)
    assert len(await snapshot(store)) == 2


async def test_coverage_lists_partners_without_reachable_tier1(
    tmp_path: Path, db_url: str, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    gappy, errors = parse_directory(
        GOOD
        + """\
  - id: hokuriku-seimitsu
    name: 北陸精密工業株式会社
    language: ja
    contacts:
      - key: watanabe
        name: 渡辺 由美
        tier: 2
        email: yumi.watanabe@hokuriku.example.jp
  - id: sakura-foods
    name: さくら食品株式会社
    language: ja
    contacts:
      - key: yamamoto
        name: 山本 恵
        tier: 1
"""
    )
    assert errors == []
    await directory.import_directory(store, gappy)
    async with store.read() as conn:
        gaps = await directory.coverage_gaps(conn)
    assert gaps == [
        {"partner_id": "hokuriku-seimitsu", "name": "北陸精密工業株式会社", "reason": "no tier-1 contact"},
        {
            "partner_id": "sakura-foods",
            "name": "さくら食品株式会社",
            "reason": "tier-1 contacts have no email or phone",
        },
    ]
    assert await show_coverage(make_settings(db_url)) == 1
    out = capsys.readouterr().out
    assert "hokuriku-seimitsu" in out and "sakura-foods" in out and "minato-shoji" not in out


async def test_example_directory_has_no_coverage_gaps(db_url: str, store: Store) -> None:
    example, _ = load_directory(EXAMPLE_DIRECTORY)
    await directory.import_directory(store, example)
    async with store.read() as conn:
        assert await directory.coverage_gaps(conn) == []
    assert await show_coverage(make_settings(db_url)) == 0


def many_partners(count: int, bad_phone_at: int | None = None, renamed: str = "") -> str:
    lines = ["# a large directory, read a few hundred partners at a time\n", "partners:\n"]
    for p in range(count):
        phone = "+81 12" if p == bad_phone_at else f"090-1{p // 10000:03d}-{p % 10000:04d}"
        lines += [
            f"  - id: partner-{p:05d}\n",
            f"    name: 取引先 {p}{renamed}\n",
            "    language: ja\n",
            "    components: [order-api]\n",
            "    contacts:\n",
            f"      - {{key: owner, name: 担当 {p}, tier: 1, email: owner{p}@partner.example.jp, phone: '{phone}'}}\n",
            f"      - {{key: ops, name: 運用 {p}, tier: 2, email: ops{p}@partner.example.jp}}\n",
        ]
    return "".join(lines)


async def test_a_directory_larger_than_one_part_imports_whole_and_keeps_contacts_that_stay(
    tmp_path: Path, store: Store
) -> None:
    count = directory.PARTNERS_A_PART * 2 + 7
    assert await directory.import_directory_file(store, write(tmp_path, many_partners(count)), "test") == (
        {"partners": count, "contacts": count * 2},
        [],
    )
    async with store.read() as conn:
        kept = await partner_store.get_contact(conn, "partner-00900", "owner")
        created = await partner_store.get_partner(conn, "partner-00900", with_contacts=False)
    assert kept is not None and created is not None

    # Fewer partners, renamed: the rest go, a contact that stays keeps its id and takes the change;
    # what stays keeps the time it was created and shows when it was updated.
    smaller = write(tmp_path, many_partners(count - 5, renamed=" 株式会社"), "smaller.yaml")
    assert await directory.import_directory_file(store, smaller, "test") == (
        {"partners": count - 5, "contacts": (count - 5) * 2},
        [],
    )
    async with store.read() as conn:
        assert await partner_store.get_partner(conn, f"partner-{count - 1:05d}") is None
        contact = await partner_store.get_contact(conn, "partner-00900", "owner")
        partner = await partner_store.get_partner(conn, "partner-00900", with_contacts=False)
    assert contact is not None and partner is not None
    assert contact["id"] == kept["id"]
    assert contact["created_at"] == kept["created_at"] < contact["updated_at"]
    assert partner["name"] == "取引先 900 株式会社"
    assert partner["created_at"] == created["created_at"] < partner["updated_at"]


async def test_an_error_in_the_last_part_of_a_large_file_changes_nothing_and_names_its_line(
    tmp_path: Path, store: Store
) -> None:
    count = directory.PARTNERS_A_PART + 20
    await directory.import_directory_file(store, write(tmp_path, many_partners(count)), "test")
    before = await snapshot(store)
    bad = write(tmp_path, many_partners(count, bad_phone_at=count - 1, renamed=" 変更"), "bad.yaml")
    counts, errors = await directory.import_directory_file(store, bad, "test")
    assert counts == {}
    bad_line = 2 + (count - 1) * 7 + 6  # the comment, `partners:`, 7 lines a partner, its owner line
    assert [f"{e.path}:{e.line}" for e in errors] == [f"{bad}:{bad_line}"]
    assert "contacts[0].phone" in errors[0].field
    assert await snapshot(store) == before


READ_HERE = [
    "  - id: a\n    name: 'it''s'\n    tier: 1\n    components: [order-api, payments]\n"
    "    policy:\n      minor: {1: x}\n",
    '  - id: b\n    name: "plain"\n    contacts:\n    - key: k\n      phone: 090-1234-5678\n    timezone:\n',
    "  - id: g\n    url: https://status.example.com/a?b=c\n    tier: 0\n",
    "- id: i\n  contacts:\n  -\n    key: k\n  -\n  - {key: j, tier: 2}\n  empty: []\n  none: {}\n# the end",
    "  - id: j\n\n    # a comment\n    name:   spaced out   inside\n    list:\n      - x\n"
    "      - [a b, 'c d', \"e\"]\n",
    "  - id: k\n    name: 東海 (Tokai) [JP], a-b\n    key:\n    next: 1\n",
]
HANDED_OVER = [
    "  - id: c\n    name: yes\n",  # YAML 1.1 reads a boolean: the safe loader's own rules decide
    "  - id: d\n    name: 0x1F\n    when: 2026-12-05\n    empty: ~\n    n: 012\n",
    "  - id: e\n    name: a: b\n",  # not valid YAML at all
    "  - id: f\n    name: &x anchored\n    alias: *x\n    text: |\n      block\n",
    "  - id: h\n    note: 取引先 # a comment\n",
    "  - id: l\n    name: trailing space \n",
    "  - id: m\n    name: a\u2028b\n",  # a line break to YAML, not to Python's file reader
    "  - id: n\n    name: a\u0085b\n",
    "  - id: o\n    \ufeffname: bom\n",
    "  - id: p\n    name: bell\u0007\n",  # a character YAML refuses
    "  - id: q\n    name: first\n      continued\n",  # a plain scalar on two lines
    '  - id: r\n    "quoted": key\n',
    "  - id: s\n    name : spaced key\n",
    "  - id: t\n    components: [a, [b]]\n",
    "  - id: u\n    components: [a:b, c?]\n",
    "  - id: v\n    name: x\n    name: y\n",  # a repeated key: the careful parse names it
    "  - id: w\n\tname: tab\n",
]


@pytest.mark.parametrize("block", READ_HERE)
def test_the_quick_reader_reads_plain_directory_yaml_exactly_as_the_safe_loader(block: str) -> None:
    assert parsing.read_plain(block.splitlines(keepends=True)) == yaml.safe_load(block)


@pytest.mark.parametrize("block", HANDED_OVER)
def test_the_quick_reader_hands_over_what_only_the_safe_loader_reads_right(block: str) -> None:
    with pytest.raises(parsing.NeedsACarefulLook):
        parsing.read_plain(block.splitlines(keepends=True))


@pytest.mark.parametrize("block", READ_HERE + HANDED_OVER)
def test_a_partner_beyond_the_plain_reader_is_read_by_libyaml_or_left_to_the_careful_parse(block: str) -> None:
    text = "partners:\n" + block
    try:  # as the careful parse reads it: libyaml, where PyYAML's own parser may differ
        expected = yaml.load(text, Loader=parsing._LibYamlLoader)["partners"]  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError:
        expected = None
    lines = io.StringIO(text)  # cut at "\n" only, as a file is read
    try:
        items = [parsing._partner_item(item) for _, item in parsing._partner_item_lines(lines)]
    except parsing.NeedsACarefulLook:
        items = None
    repeats_a_key = block.count("name:") > 1
    assert items == (None if repeats_a_key else expected)


def test_the_quick_way_and_the_careful_way_read_the_same_directory(tmp_path: Path) -> None:
    example = EXAMPLE_DIRECTORY.read_text(encoding="utf-8")
    large = many_partners(directory.PARTNERS_A_PART + 3)
    for text in (example, large, GOOD):
        quick, errors = parse_directory(text)
        careful, careful_errors = parsing._careful_parse(text, "<string>")
        assert errors == careful_errors == []
        assert quick.rows() == careful.rows()
    assert len(parse_directory(large)[0].partners) == directory.PARTNERS_A_PART + 3


def test_errors_in_several_parts_are_each_named_as_the_whole_file_names_them(tmp_path: Path) -> None:
    count = directory.PARTNERS_A_PART * 2 + 10
    lines = many_partners(count, bad_phone_at=3).splitlines(keepends=True)
    first = 2 + 7 * (directory.PARTNERS_A_PART + 1)  # the second part's second partner
    lines[first] = "  - id: partner-00007\n"  # the id of a partner in the first part
    lines[first + 2] = "    language: fr\n"
    lines[-1] = lines[-1].replace("tier: 2", "tier: 5").removesuffix("\n")  # the very last line
    path = write(tmp_path, "".join(lines))
    _, errors = load_directory(path)
    assert errors == parsing._careful_parse(path.read_text(encoding="utf-8"), str(path))[1]
    assert [(e.line, e.field) for e in errors] == [
        (2 + 3 * 7 + 6, "partners[3].contacts[0].phone"),
        (first + 1, f"partners[{directory.PARTNERS_A_PART + 1}].id"),
        (first + 3, f"partners[{directory.PARTNERS_A_PART + 1}].language"),
        (len(lines), f"partners[{count - 1}].contacts[1].tier"),
    ]
    assert "duplicate partner id 'partner-00007'" in errors[1].message
    assert all(str(e).startswith(f"{path}:{e.line}:") for e in errors)


async def test_a_bad_last_line_changes_nothing_and_is_named(tmp_path: Path, db_url: str, store: Store) -> None:
    settings = make_settings(db_url)
    assert await import_file(settings, str(write(tmp_path, GOOD))) == 0
    before = await snapshot(store)
    bad = write(tmp_path, GOOD.rstrip("\n").replace("channels: [sms]", "channels: [sms, fax]"), "bad.yaml")
    counts, errors = await directory.import_directory_file(store, bad, "test")
    assert counts == {}
    assert [(f"{e.path}:{e.line}", e.field) for e in errors] == [
        (f"{bad}:{len(GOOD.splitlines())}", "partners[1].contacts[0].channels[1]")
    ]
    assert await import_file(settings, str(bad)) == 1
    assert await snapshot(store) == before
    assert gc.isenabled() and gc.get_freeze_count() == 0  # the import's pause of the collector is over
