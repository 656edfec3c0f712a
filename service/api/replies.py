"""What the API answers, as models for the published contract (service/api/contract.py).

The handlers build their JSON with the `*_json` functions next to them; these models describe
that JSON, and the fuzz test (tests/test_contract.py) checks every answer against them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, RootModel

Timestamp = str  # ISO 8601, UTC, e.g. 2026-11-25T06:52:00Z
LocalText = str | dict[str, str]  # one text for every language, or {"ja": ..., "en": ...}


class Reply(BaseModel):
    model_config = ConfigDict(extra="allow")


class Status(Reply):
    status: str


class ConfigWarning(Reply):
    code: str  # no_token_enabled, public_base_url_loopback, example_directory, ack_secret_missing
    detail: str


class Readiness(Reply):
    status: str
    # Configuration an operator should fix; Herald is ready all the same.
    warnings: list[ConfigWarning]


class PlanCounts(Reply):
    total: int
    partners: int
    by_tier: dict[str, int]
    by_channel: dict[str, int]


class NoticeOutcome(Reply):
    """What opening or updating an incident, publishing a draft or a broadcast did."""

    incident_id: int | None
    notice_id: int | None
    version: int | None = None
    state: str | None = None
    deliveries: PlanCounts | None = None


class Cancelled(Reply):
    """The notices a cancellation stopped: the one asked for and the follow-ups it had scheduled."""

    cancelled: list[int]


class DrillStarted(Reply):
    drill_id: int
    incident_id: int
    mode: str
    steps: int
    planned: int


class Drill(Reply):
    id: int
    scenario: str
    name: str
    mode: str
    incident_id: int | None


class DrillList(Reply):
    items: list[Drill]


class DrillReport(Reply):
    drill: Drill
    summary: dict[str, Any]
    partners: list[dict[str, Any]]


class Incident(Reply):
    id: int
    title: LocalText
    severity: str
    status: str
    components: list[str]
    impact: LocalText | None
    responsible: dict[str, Any]
    next_update_at: Timestamp | None
    estimates: dict[str, Any] | None
    source: str | None
    created_at: Timestamp | None
    updated_at: Timestamp | None
    resolved_at: Timestamp | None


class Notice(Reply):
    id: int
    incident_id: int | None
    kind: str
    version: int
    corrects_id: int | None
    state: str
    severity: str
    status: str | None
    fields: dict[str, Any]
    audience: dict[str, Any]
    next_update_at: Timestamp | None
    created_by: str | None
    created_at: Timestamp | None
    published_at: Timestamp | None
    deliveries: dict[str, int]


class Promise(Reply):
    """A next update promised to partners: pending, due_soon, overdue, kept or kept_late."""

    id: int
    notice_id: int
    due_at: str
    state: str
    kept_by_notice_id: int | None = None
    minutes_late: int | None = None


class IncidentWithTimeline(Incident):
    timeline: list[Notice]
    promise: Promise | None = None
    promises: list[Promise] = []


class IncidentPage(Reply):
    items: list[Incident]
    next_cursor: int | None


class NoticeList(Reply):
    items: list[Notice]


class Contact(Reply):
    key: str
    name: str
    tier: int
    email: str | None
    phone: str | None
    webhook_url: str | None = None
    channels: list[str]
    language: str | None
    created_at: Timestamp | None
    updated_at: Timestamp | None


class AccountOwner(Reply):
    """One of our own staff who gets a copy of every notice the partner gets."""

    key: str
    name: str
    email: str | None
    phone: str | None
    channels: list[str]
    language: str


class Partner(Reply):
    id: str
    name: str
    language: str
    components: list[str]
    policy: dict[str, Any] | None
    created_at: Timestamp | None
    updated_at: Timestamp | None
    contacts: list[Contact] | None = None
    account_owners: list[AccountOwner] | None = None


class PartnerPage(Reply):
    items: list[Partner]
    next_cursor: str | None


class ContactList(Reply):
    items: list[Contact]


class CoverageGap(Reply):
    partner_id: str
    name: str
    reason: str


class SuppressedContact(Reply):
    partner_id: str
    contact: str
    tier: int
    channel: str
    address: str
    suppression_id: int
    reason: str
    code: str | None
    since: Timestamp | None


class Coverage(Reply):
    gaps: list[CoverageGap]
    suppressed: list[SuppressedContact] = []


class Suppression(Reply):
    id: int
    channel: str
    address: str
    reason: str
    code: str | None
    source: str
    delivery_id: int | None
    created_at: Timestamp | None
    cleared_at: Timestamp | None
    cleared_by: str | None


class SuppressionList(Reply):
    items: list[Suppression]


class ContactRequest(Reply):
    id: int
    partner_id: str
    requested_by_contact_id: int
    contact_key: str | None
    change: dict[str, Any]
    state: str
    created_at: Timestamp | None
    decided_at: Timestamp | None
    decided_by: str | None
    note: str | None


class ContactRequestList(Reply):
    items: list[ContactRequest]


class Delivery(Reply):
    id: int
    notice_id: int
    incident_id: int | None
    partner_id: str
    contact_id: int
    tier: int
    channel: str
    address: str
    language: str
    status: str
    reason: str | None  # why the plan shaped the row: capped, merged, held, suppressed...
    attempts: int
    priority: int
    escalation_step: int
    provider_id: str | None
    provider_status: str | None
    error_code: str | None
    last_error: str | None
    message_id: str
    created_at: Timestamp | None
    updated_at: Timestamp | None
    next_attempt_at: Timestamp | None
    sent_at: Timestamp | None
    delivered_at: Timestamp | None
    failed_at: Timestamp | None
    acknowledged_at: Timestamp | None
    detail: dict[str, Any] | None = None
    reason_text: str | None = None


class Attempt(Reply):
    attempt: int
    at: Timestamp | None
    outcome: str  # sent | retry | failed | dead
    error: str | None
    error_code: str | None
    provider_id: str | None


class Receipt(Reply):
    id: int
    source: str
    status: str
    error_code: str | None
    detail: dict[str, Any] | None
    received_at: Timestamp | None


class DeliveryDetail(Delivery):
    attempt_history: list[Attempt]
    receipts: list[Receipt]


class DeliveryPage(Reply):
    items: list[Delivery]
    next_cursor: int | None


class Requeued(Reply):
    id: int
    status: str


class Summary(Reply):
    total: int
    by_status: dict[str, int]
    by_channel: dict[str, dict[str, int]]
    by_tier: dict[str, dict[str, int]]
    by_tier_channel: dict[str, dict[str, dict[str, int]]]
    incident_id: int | None = None
    notice_id: int | None = None


class Report(Reply):
    """The evidence report: the incident, every notice version with its text, every recipient."""

    incident: dict[str, Any]


class IngestResult(Reply):
    incident_id: int | None
    notice_id: int | None
    action: str


class IngestReply(RootModel[IngestResult | list[IngestResult]]):
    """One result per group, or a list (one per alert) with `ingest.incident_per = "fingerprint"`."""


class ReceiptOutcome(Reply):
    delivery_id: int | None
    status: str | None
    applied: bool
    duplicate: bool


class BounceOutcome(ReceiptOutcome):
    bounce_status: str
    permanent: bool


class ApiDocument(Reply):
    """An OpenAPI 3.1 document."""

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]


class MailOutcome(Reply):
    """What became of a piped-in mail: a question, unmatched (kept for an operator), or refused."""

    outcome: str
    reason: str | None
    inbound_mail_id: int
    question_id: int | None
    notice_id: int | None


class InboundMail(Reply):
    id: int
    received_at: Timestamp | None
    message_id: str | None
    sender: str | None
    subject: str | None
    text: str | None
    outcome: str
    reason: str | None
    question_id: int | None
    notice_id: int | None
    partner_id: str | None


class InboundMailPage(Reply):
    items: list[InboundMail]
    next_cursor: int | None


class Question(Reply):
    id: int
    incident_id: int | None
    notice_id: int
    partner_id: str
    contact_id: int
    source: str
    language: str
    body: str
    asked_at: Timestamp | None
    state: str
    answer: dict[str, str] | None
    reminders: int


class QuestionList(Reply):
    items: list[Question]


class Answered(Reply):
    question_id: int
    state: str
    publish: bool


class EmailPreview(Reply):
    subject: str | None
    text: str
    html: str | None


class SmsPreview(Reply):
    text: str
    length: int
    units: int
    encoding: str  # GSM-7 | UCS-2
    segments: int
    max_segments: int
    cut: bool


class MessagePreview(Reply):
    email: EmailPreview
    sms: SmsPreview


class AudiencePreview(PlanCounts):
    contacts: int
    deliveries: int
    by_tier_channel: dict[str, dict[str, int]]
    languages: dict[str, int]
    sms_segments: int


class PreviewWarning(Reply):
    code: str  # missing_language | next_update_missing | next_update_past | sms_cut | no_tier1_contact | no_recipients
    detail: str
    field: str | None = None
    language: str | None = None


class Preview(Reply):
    """`?dry_run=true`: what publishing would send, per language its recipients read, and to whom."""

    dry_run: bool
    notice: dict[str, Any] | None
    messages: dict[str, MessagePreview]
    audience: dict[str, Any] | AudiencePreview
    warnings: list[PreviewWarning]


class Discarded(Reply):
    notice_id: int
    state: str


class OutcomeOrPreview(Reply):
    """An update's 200: what a silent change did, or with `?dry_run=true` the preview."""

    incident_id: int | None = None
    notice_id: int | None = None
    dry_run: bool | None = None
    notice: dict[str, Any] | None = None
    messages: dict[str, MessagePreview] | None = None
    audience: dict[str, Any] | None = None
    warnings: list[PreviewWarning] | None = None
