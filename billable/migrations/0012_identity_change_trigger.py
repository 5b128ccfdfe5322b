"""Identity change notices from the database itself (PostgreSQL only; nothing on SQLite).

Bots trust a cached ``tg_id → account`` while their listener is connected, so every write that
moves or removes an external identity must send a notice — including the ones that bypass
Django's signals: a queryset ``update()``, ``bulk_update``, raw SQL, an operator in psql, another
service. Triggers on ``billable_external_identities`` queue ``pg_notify('billable_identity', …)``
with the payload ``billable.ledger.sql.decode_identity_notice`` reads (delivered on commit only):

* an UPDATE that changes ``user_id``, ``provider`` or ``external_id`` names the old and new
  accounts and the old (and new, if different) ``(provider, external_id)`` pairs; the ``WHEN``
  clauses skip every other update (the bots' profile writes) without calling the function;
* a DELETE (also one cascaded from the account) names the old account and pair;
* a TRUNCATE says ``{"all":true}``;
* a row that pointed to nobody (``user_id`` NULL) sends nothing when it is linked, renamed or
  deleted: no cached entry can stand on it (the change that unlinked it sent its notice), and a
  first contact — the bots' most frequent identity write — stays free of the notify queue.

The SQL is frozen here on purpose (literal table and trigger names; the listener checks for these
trigger names before it trusts the cache: ``billable.ledger.sql.IDENTITY_TRIGGERS``).
"""

from django.db import migrations

INSTALL = r"""
CREATE OR REPLACE FUNCTION billable_identity_notice() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    users text[] := ARRAY[]::text[];
    pairs text[];
    payload text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('billable_identity', '{"all":true}');
        RETURN NULL;
    END IF;
    IF OLD.user_id IS NOT NULL THEN
        users := users || to_json(OLD.user_id::text)::text;
    END IF;
    pairs := ARRAY['[' || to_json(OLD.provider)::text || ','
                   || to_json(OLD.external_id)::text || ']'];
    IF TG_OP = 'UPDATE' THEN
        IF NEW.user_id IS NOT NULL AND NEW.user_id IS DISTINCT FROM OLD.user_id THEN
            users := users || to_json(NEW.user_id::text)::text;
        END IF;
        IF NEW.provider IS DISTINCT FROM OLD.provider
                OR NEW.external_id IS DISTINCT FROM OLD.external_id THEN
            pairs := pairs || ('[' || to_json(NEW.provider)::text || ','
                               || to_json(NEW.external_id)::text || ']');
        END IF;
    END IF;
    payload := '{"users":[' || array_to_string(users, ',') || '],"identities":['
               || array_to_string(pairs, ',') || ']}';
    IF octet_length(payload) > 7900 THEN
        payload := '{"all":true}';
    END IF;
    PERFORM pg_notify('billable_identity', payload);
    RETURN NULL;
END
$$;

CREATE TRIGGER billable_identity_notice_update
    AFTER UPDATE ON billable_external_identities
    FOR EACH ROW
    WHEN (OLD.user_id IS NOT NULL
          AND (OLD.user_id IS DISTINCT FROM NEW.user_id
               OR OLD.provider IS DISTINCT FROM NEW.provider
               OR OLD.external_id IS DISTINCT FROM NEW.external_id))
    EXECUTE FUNCTION billable_identity_notice();

CREATE TRIGGER billable_identity_notice_delete
    AFTER DELETE ON billable_external_identities
    FOR EACH ROW
    WHEN (OLD.user_id IS NOT NULL)
    EXECUTE FUNCTION billable_identity_notice();

CREATE TRIGGER billable_identity_notice_truncate
    AFTER TRUNCATE ON billable_external_identities
    FOR EACH STATEMENT
    EXECUTE FUNCTION billable_identity_notice();
"""

UNINSTALL = r"""
DROP TRIGGER IF EXISTS billable_identity_notice_truncate ON billable_external_identities;
DROP TRIGGER IF EXISTS billable_identity_notice_delete ON billable_external_identities;
DROP TRIGGER IF EXISTS billable_identity_notice_update ON billable_external_identities;
DROP FUNCTION IF EXISTS billable_identity_notice();
"""


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(INSTALL, params=None)


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(UNINSTALL, params=None)


class Migration(migrations.Migration):

    dependencies = [
        ('billable', '0011_wallet_index_in_spend_order'),
    ]

    operations = [
        migrations.RunPython(install, uninstall, elidable=False),
    ]
