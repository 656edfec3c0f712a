"""The schema. Times are UNIX seconds (float) so SQLite and PostgreSQL order and compare alike.

The deliveries table is both the outbox and the delivery log: a row is written before the
first attempt and updated after each one, so the log is the queue's own history.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Id = BigInteger().with_variant(Integer, "sqlite")

partners = Table(
    "partners",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("language", String(2), nullable=False),
    Column("components", JSON, nullable=False, default=list),
    # Per-partner policy override: {severity: {tier: [channels]}}.
    Column("policy", JSON, nullable=True),
    # IANA zone for quiet hours; None = the company's.
    Column("timezone", String(64), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("partner_id", String(64), ForeignKey("partners.id", ondelete="CASCADE"), nullable=False),
    Column("key", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("tier", Integer, nullable=False),
    Column("email", String(320), nullable=True),
    Column("phone", String(32), nullable=True),
    Column("webhook_url", String(320), nullable=True),
    Column("channels", JSON, nullable=False, default=list),
    Column("language", String(2), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("partner_id", "key", name="uq_contacts_partner_key"),
)

# Our own staff who own the relationship with a partner: they get a copy of every notice the
# partner gets, with the partner's delivery and acknowledgement status.
account_owners = Table(
    "account_owners",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("partner_id", String(64), ForeignKey("partners.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("key", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("email", String(320), nullable=True),
    Column("phone", String(32), nullable=True),
    Column("channels", JSON, nullable=False, default=list),
    Column("language", String(2), nullable=False, default="ja"),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("partner_id", "key", name="uq_account_owners_partner_key"),
)

# One row whose `version` the database raises on every write to partners, contacts or account
# owners (triggers, migration 0013): a process keeps a summary of the directory for dry runs and
# knows it is current by reading one number (service/store/directory_snapshot.py).
directory_version = Table(
    "directory_version",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", BigInteger, nullable=False, default=0),
)

incidents = Table(
    "incidents",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # Operator text: a string, or {"ja": ..., "en": ...}.
    Column("title", JSON, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("status", String(24), nullable=False),
    Column("components", JSON, nullable=False, default=list),
    Column("impact", JSON, nullable=True),
    Column("responsible", JSON, nullable=True),
    Column("next_update_at", Float, nullable=True),
    Column("estimates", JSON, nullable=True),
    Column("source", String(32), nullable=False, default="api"),
    # Dedup key of the monitoring source (Alertmanager groupKey, fingerprint, Grafana rule).
    Column("source_key", String(512), nullable=True, unique=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("resolved_at", Float, nullable=True),
    # A drill's incident: "sandbox" (its messages stay in the sandbox) or "real" (real contacts).
    # Every real figure leaves these out.
    Column("drill", String(8), nullable=True),
)

notices = Table(
    "notices",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("incident_id", Id, ForeignKey("incidents.id"), nullable=True, index=True),
    Column("kind", String(32), nullable=False),  # operator_question_unanswered is 28
    # Position in the incident's sequence of notices (1 = the first thing partners heard).
    Column("version", Integer, nullable=False),
    Column("corrects_id", Id, ForeignKey("notices.id"), nullable=True),
    # draft | published | discarded | held (for operators only) | internal (to our operators)
    # | scheduled | cancelled | failed
    Column("state", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("status", String(24), nullable=True),
    Column("fields", JSON, nullable=False),
    Column("audience", JSON, nullable=False),
    # The text partners read, per language: {lang: {subject, txt, html, sms}}. Evidence.
    Column("rendered", JSON, nullable=True),
    Column("next_update_at", Float, nullable=True),
    Column("created_by", String(64), nullable=True),
    # The operator let recipients read the other language where a field lacks theirs.
    Column("allow_language_fallback", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("published_at", Float, nullable=True),
    # A scheduled notice (state `scheduled`) is published at this time by the scheduler.
    Column("send_at", Float, nullable=True, index=True),
    # The notice that scheduled this one (a maintenance reminder or completion follows its announcement).
    Column("follows_id", Id, nullable=True, index=True),
    # The drill mode of a drill's notices (see incidents.drill); None for real notices.
    Column("drill", String(8), nullable=True),
    UniqueConstraint("incident_id", "version", name="uq_notices_incident_version"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("notice_id", Id, ForeignKey("notices.id"), nullable=False, index=True),
    Column("incident_id", Id, nullable=True, index=True),
    Column("partner_id", String(64), nullable=False, index=True),
    Column("contact_id", Id, nullable=False, index=True),
    Column("tier", Integer, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("address", String(320), nullable=False),
    Column("language", String(2), nullable=False),
    # Lower is sooner: see policy.priority_of.
    Column("priority", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_until", Float, nullable=True),
    Column("worker", String(64), nullable=True),
    Column("message_id", String(255), nullable=False, unique=True),
    Column("provider_id", String(255), nullable=True),
    Column("provider_status", String(32), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("error_code", String(32), nullable=True),
    Column("body_hash", String(64), nullable=True),
    # Escalation step that created this delivery (0 = the original plan).
    Column("escalation_step", Integer, nullable=False, default=0),
    # A drill's delivery: "sandbox" (sent to the sandbox whatever the channel) or "real"; None otherwise.
    Column("drill", String(8), nullable=True),
    # Why the plan differs from the plain policy: capped | merged | held | suppressed (see
    # service/volume.py), with the particulars in `detail` (versions merged or skipped, hold reason).
    Column("reason", String(16), nullable=True),
    Column("detail", JSON, nullable=True),
    # partner: a notice to a partner's contact (the only kind any delivery figure counts);
    # internal: an account owner's copy; answer: an answer to a partner's question.
    Column("purpose", String(16), nullable=False, default="partner", server_default="partner"),
    # The account owner an internal copy went to (contact_id is 0 then), the question an answer is to.
    Column("owner_id", Id, nullable=True),
    Column("question_id", Id, nullable=True, index=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("sent_at", Float, nullable=True),
    Column("delivered_at", Float, nullable=True),
    Column("failed_at", Float, nullable=True),
    Column("acknowledged_at", Float, nullable=True),
    # `id` last: the claim orders by all four, so its LIMIT stops an index scan early.
    Index("ix_deliveries_due", "status", "channel", "priority", "next_attempt_at", "id"),
    Index("ix_deliveries_provider_id", "provider_id"),
    Index("ix_deliveries_created_at", "created_at"),
    Index("ix_deliveries_incident_contact", "incident_id", "contact_id"),
)

inbound_events = Table(
    "inbound_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source", String(32), nullable=False),
    Column("principal", String(64), nullable=True),
    Column("received_at", Float, nullable=False),
    Column("content_type", String(128), nullable=True),
    Column("body", Text, nullable=False),
    Column("outcome", String(32), nullable=False, default="accepted"),
    Column("incident_id", Id, nullable=True, index=True),
    Column("notice_id", Id, nullable=True),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("principal", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("route", String(255), nullable=False),
    Column("request_hash", String(64), nullable=False),
    # Empty while the first request with this key is still running (a claim); set when it answered.
    Column("status", Integer, nullable=True),
    Column("response", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("completed_at", Float, nullable=True),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False, index=True),
    Column("actor", String(64), nullable=True),
    Column("action", String(64), nullable=False),
    Column("subject_type", String(32), nullable=False),
    Column("subject_id", String(64), nullable=True),
    Column("detail", JSON, nullable=True),
)

sandbox_messages = Table(
    "sandbox_messages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("delivery_id", Id, nullable=True, index=True),
    Column("channel", String(16), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("subject", Text, nullable=True),
    Column("body", Text, nullable=False),
    Column("html", Text, nullable=True),
    Column("message_id", String(255), nullable=True),
    Column("created_at", Float, nullable=False),
)

receipts = Table(
    "receipts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("delivery_id", Id, nullable=True, index=True),
    Column("source", String(16), nullable=False),  # twilio | bounce | smtp | ack
    Column("status", String(32), nullable=False),
    Column("error_code", String(32), nullable=True),
    Column("detail", JSON, nullable=True),
    Column("received_at", Float, nullable=False),
    # A Twilio report for a message id no delivery holds yet (delivery_id empty): applied when
    # the dispatcher records that id.
    Column("provider_id", String(255), nullable=True, index=True),
)

# Every attempt of every delivery, with its outcome: the delivery row keeps only the latest.
delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("delivery_id", Id, ForeignKey("deliveries.id"), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("worker", String(64), nullable=True),
    Column("at", Float, nullable=False),
    # sent | retry (transient failure, another attempt is due) | failed (permanent) | dead (gave up)
    Column("outcome", String(16), nullable=False),
    Column("error", Text, nullable=True),
    Column("error_code", String(32), nullable=True),
    Column("provider_id", String(255), nullable=True),
    Column("send_seconds", Float, nullable=True),
)

acknowledgements = Table(
    "acknowledgements",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("notice_id", Id, nullable=False, index=True),
    Column("delivery_id", Id, nullable=False, unique=True),
    Column("partner_id", String(64), nullable=False),
    Column("contact_id", Id, nullable=False),
    Column("at", Float, nullable=False),
    Column("user_agent", String(300), nullable=True),
)

escalations = Table(
    "escalations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("notice_id", Id, nullable=False, index=True),
    Column("partner_id", String(64), nullable=False),
    Column("step", Integer, nullable=False),
    # What the step does: reminder | tier2 | operators (see settings.EscalationStep).
    Column("action", String(16), nullable=True),
    Column("due_at", Float, nullable=False, index=True),
    Column("state", String(16), nullable=False),  # scheduled | fired | cancelled
    Column("detail", JSON, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("done_at", Float, nullable=True),
    UniqueConstraint("notice_id", "partner_id", "step", name="uq_escalations_notice_partner_step"),
)

alert_groups = Table(
    "alert_groups",
    metadata,
    Column("key", String(512), primary_key=True),
    Column("source", String(32), nullable=False),
    Column("incident_id", Id, nullable=False),
    Column("state", String(16), nullable=False),  # firing | resolved
    Column("fingerprints", JSON, nullable=False),
    Column("components", JSON, nullable=False),
    Column("transitions", JSON, nullable=False),  # recent [at, state] pairs for flap damping
    Column("pending", JSON, nullable=True),  # an update held back by damping
    Column("pending_due_at", Float, nullable=True, index=True),
    Column("updated_at", Float, nullable=False),
)

promises = Table(
    "promises",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("incident_id", Id, nullable=False, index=True),
    # The published notice that named the next update, and the one that kept the promise.
    Column("notice_id", Id, nullable=False, unique=True),
    Column("due_at", Float, nullable=False),
    # pending → due_soon → overdue, each reminding the on-call operators; kept / kept_late at the
    # next published notice of the incident.
    Column("state", String(16), nullable=False),
    # When the checker should look at the promise again (None once there is nothing left to remind).
    Column("check_at", Float, nullable=True, index=True),
    Column("kept_by_notice_id", Id, nullable=True),
    Column("kept_at", Float, nullable=True),
    Column("reminded_due_soon_at", Float, nullable=True),
    Column("reminded_overdue_at", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Addresses and numbers Herald no longer sends to: a hard bounce, or an SMS number that refused
# for good (invalid, landline, opted out). Cleared by an admin once the contact is fixed; a
# cleared row stays as history.
suppressions = Table(
    "suppressions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("channel", String(16), nullable=False),  # email | sms
    Column("address", String(320), nullable=False),
    Column("reason", Text, nullable=False),
    Column("code", String(32), nullable=True),  # DSN status (5.1.1) or Twilio error code (21610)
    Column("source", String(16), nullable=False),  # bounce | smtp | twilio
    Column("delivery_id", Id, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("cleared_at", Float, nullable=True),
    Column("cleared_by", String(64), nullable=True),
    Index("ix_suppressions_address", "channel", "address"),
)

# A tier-1 contact's request, from the partner page, to change the partner's contacts: applied to
# the directory only when an admin approves it.
contact_change_requests = Table(
    "contact_change_requests",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("partner_id", String(64), nullable=False, index=True),
    Column("requested_by", Id, nullable=False),  # the contact whose link was used
    Column("contact_key", String(64), nullable=True),  # the contact to change; None = a new one
    Column("change", JSON, nullable=False),  # the whole contact as requested, already validated
    Column("state", String(16), nullable=False),  # pending | approved | rejected
    Column("created_at", Float, nullable=False),
    Column("decided_at", Float, nullable=True),
    Column("decided_by", String(64), nullable=True),
    Column("note", Text, nullable=True),
)


# A partner contact's question about a notice: asked on the acknowledgement page, the partner
# page or by replying to the notice email; answered by an operator in the partner's language.
questions = Table(
    "questions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("incident_id", Id, nullable=True, index=True),
    Column("notice_id", Id, ForeignKey("notices.id"), nullable=False),
    Column("partner_id", String(64), nullable=False),
    Column("contact_id", Id, nullable=False),
    # The delivery whose link or reply address the question came through.
    Column("delivery_id", Id, nullable=True),
    Column("source", String(16), nullable=False),  # ack_page | partner_page | email
    Column("language", String(2), nullable=False),
    Column("body", Text, nullable=False),
    Column("asked_at", Float, nullable=False),
    Column("state", String(16), nullable=False),  # open | answered
    Column("answer", JSON, nullable=True),  # {"ja": ..., "en": ...}
    Column("answered_by", String(64), nullable=True),
    Column("answered_at", Float, nullable=True),
    # Publish as a Q&A in the incident's next notice: the question as partners read it there.
    Column("publish", JSON, nullable=True),
    Column("published_in_notice_id", Id, nullable=True),
    # The next reminder to the on-call operators while it stays unanswered.
    Column("remind_due_at", Float, nullable=True, index=True),
    Column("reminders", Integer, nullable=False, default=0),
    Column("inbound_mail_id", Id, nullable=True),
)

# Every mail piped to POST /v1/inbound/email, kept whatever became of it: a question, unmatched
# (no notice found: an operator reads it), or refused (a forged or another partner's token).
inbound_mail = Table(
    "inbound_mail",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("received_at", Float, nullable=False, index=True),
    Column("message_id", String(998), nullable=True),
    Column("sender", String(320), nullable=True),
    Column("subject", Text, nullable=True),
    Column("text", Text, nullable=True),  # the reply without the quoted notice
    Column("raw", Text, nullable=False),
    Column("outcome", String(16), nullable=False),  # question | unmatched | refused
    Column("reason", Text, nullable=True),
    Column("question_id", Id, nullable=True),
    Column("notice_id", Id, nullable=True),
    Column("partner_id", String(64), nullable=True),
)

drills = Table(
    "drills",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # The scenario's own key: runs of the same scenario are compared with each other.
    Column("scenario_key", String(100), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("mode", String(8), nullable=False),  # sandbox | real
    Column("time_scale", Float, nullable=False),
    Column("scenario", JSON, nullable=False),
    Column("incident_id", Id, nullable=True),
    Column("started_by", String(64), nullable=True),
    Column("started_at", Float, nullable=False),
)
