"""An estimate is honest only with its basis: partners read the time and cost with their assumptions
and risks, and a later estimate names the one it replaces and why it changed."""

from __future__ import annotations

from typing import Any

from service import appkeys
from service.render import Renderer
from tests.helpers import auth
from tests.helpers.incidents import open_incident
from tests.helpers.notice_context import notice_context

BASIS = {
    "assumptions": {"ja": "予備系サーバーが正常に起動すること", "en": "The standby server starts normally"},
    "risks": {"ja": "データ復元に想定以上の時間がかかる可能性", "en": "Restoring data may take longer than planned"},
}


def estimate(time: str, cost: str, **fields: Any) -> dict[str, Any]:
    return {
        "notice": {
            "kind": "estimate",
            "fields": {
                "summary": {"ja": "見込みをお知らせします", "en": "Our current estimate"},
                "time_estimate": {"ja": f"約{time}時間", "en": f"About {time} hours"},
                "cost_estimate": cost,
                **BASIS,
                **fields,
            },
        }
    }


async def post_update(client: Any, incident_id: int, body: dict[str, Any]) -> Any:
    return await client.post(f"/v1/incidents/{incident_id}/updates", json=body, headers=auth("operator"))


async def timeline(client: Any, incident_id: int) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/incidents/{incident_id}", headers=auth("operator"))
    return (await response.json())["timeline"]


async def test_an_estimate_without_its_assumptions_and_risks_is_refused(client: Any) -> None:
    incident_id = (await open_incident(client))["incident_id"]
    body = estimate("3", "None")
    del body["notice"]["fields"]["risks"]
    response = await post_update(client, incident_id, body)
    assert response.status == 422
    assert (await response.json())["field"] == "notice.fields.risks"


async def test_a_later_estimate_names_the_one_it_replaces_and_must_say_why_it_changed(client: Any) -> None:
    incident_id = (await open_incident(client))["incident_id"]
    assert (await post_update(client, incident_id, estimate("3", "None"))).status == 202

    changed_without_reason = await post_update(client, incident_id, estimate("6", "None"))
    assert changed_without_reason.status == 422
    assert (await changed_without_reason.json())["field"] == "notice.fields.change_reason"

    reason = {"ja": "データ復元に追加の時間が必要と判明したため", "en": "Restoring data needs more time than planned"}
    assert (await post_update(client, incident_id, estimate("6", "None", change_reason=reason))).status == 202

    first, second = [n for n in await timeline(client, incident_id) if n["kind"] == "estimate"]
    assert "replaces" not in first["fields"]
    assert second["fields"]["replaces"]["version"] == first["version"]
    assert second["fields"]["replaces"]["time_estimate"] == {"ja": "約3時間", "en": "About 3 hours"}

    async with client.app[appkeys.STORE].read() as conn:
        from service.store import incidents as incident_store

        notice = await incident_store.read_notice(conn, second["id"])
    assert notice is not None and notice.rendered is not None
    rendered = notice.rendered
    ja, en = rendered["ja"]["txt"], rendered["en"]["txt"]
    assert f"第{first['version']}報の見込みを更新" in ja
    assert "約6時間" in ja and "（前回・第2報：約3時間）" in ja
    assert "データ復元に追加の時間が必要と判明したため" in ja and "予備系サーバーが正常に起動すること" in ja
    assert f"replaces the estimate in update #{first['version']}" in en
    assert "Restoring data needs more time than planned" in en
    assert 'class="estimate"' in rendered["en"]["html"] and "Previous (update #2)" in rendered["en"]["html"]


async def test_an_unchanged_estimate_needs_no_reason(client: Any) -> None:
    incident_id = (await open_incident(client))["incident_id"]
    assert (await post_update(client, incident_id, estimate("3", "None"))).status == 202
    assert (await post_update(client, incident_id, estimate("3", "None"))).status == 202


def test_the_estimate_table_shows_each_figure_with_its_basis_in_both_languages() -> None:
    renderer = Renderer()
    labels = {"ja": ("前提条件", "見込みが変わりうるリスク"), "en": ("Assumptions", "Risks that could change it")}
    for lang in ("ja", "en"):
        context = notice_context(lang, assumptions=BASIS["assumptions"][lang], risks=BASIS["risks"][lang])
        message = renderer.render("estimate", lang, context)
        table = message.html[message.html.index('class="estimate"') :]
        table = table[: table.index("</table>")]
        for label in labels[lang]:
            assert label in table and label in message.txt
        assert BASIS["assumptions"][lang] in table and BASIS["risks"][lang] in table
        assert context["notice"]["time_estimate"] in table and context["notice"]["cost_estimate"] in table
        # Shown once, in the table, not again as a loose section.
        assert message.html.count(context["notice"]["time_estimate"]) == 1
